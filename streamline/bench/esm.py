"""Benchmark: records per second through the ESM runner vs a bare GetRecords loop.

Both read the same one-shard stream on the same moto server in the same run: first a plain
boto3 GetShardIterator/GetRecords loop that only counts records, then the runner delivering
them to a no-op handler (``noop`` below) in a warm worker process. The runner's figure
includes everything it does per record: event JSON, the worker round trip, checkpoints.

The target compares against the bare loop as boto3 runs it by default. The runner's own
client skips botocore's datetime parsing of arrival timestamps (``esm/sources.py``), which
the bare loop pays; so a second bare loop with that same client setting is measured too, and
``ratio_same_parsing`` is the runner's overhead with that difference taken out.

    .venv/bin/python scripts/bench.py esm
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from tempfile import TemporaryDirectory

RECORDS = 20000
PAYLOAD = b'{"key": "k", "n": 1, "payload": "' + b"x" * 64 + b'"}'
TARGET_RATIO = 0.8
ROUNDS = 3


def noop(event, context):
    """The benchmark's handler: accepts every batch."""
    return None


def _bare_loop(kinesis, stream: str, shard_id: str, expected: int) -> float:
    """Seconds for a plain GetRecords loop to read ``expected`` records."""
    started = time.perf_counter()
    iterator = kinesis.get_shard_iterator(
        StreamName=stream, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    seen = 0
    while seen < expected:
        response = kinesis.get_records(ShardIterator=iterator, Limit=10000)
        seen += len(response["Records"])
        iterator = response["NextShardIterator"]
    return time.perf_counter() - started


def _runner(session, stream_arn: str, batch_size: int, expected: int, state_dir: Path) -> float:
    """Seconds for the runner to deliver ``expected`` records to the no-op handler."""
    from esm import FunctionSettings, MappingSettings, Runner, Tuning

    function = FunctionSettings(
        name="bench-noop",
        arn="arn:aws:lambda:us-east-1:123456789012:function:bench-noop",
        handler="streamline.bench.esm.noop",
        timeout_s=30,
    )
    runner = Runner(
        function,
        [MappingSettings(event_source_arn=stream_arn, batch_size=batch_size)],
        code_dir=Path(__file__).resolve().parent.parent,
        session=session,
        tuning=Tuning(poll_interval_s=0.05, progress_interval_s=0),
        state_dir=state_dir,
        progress=None,
    )
    started = time.perf_counter()
    thread = threading.Thread(target=runner.run)
    thread.start()
    try:
        while sum(s.records_processed for s in runner.stats) < expected:
            if not thread.is_alive():
                raise RuntimeError("the runner stopped before delivering every record")
            time.sleep(0.002)
        elapsed = time.perf_counter() - started
    finally:
        runner.stop()
        thread.join(60)
    return elapsed


def run() -> Iterator[dict]:
    import boto3

    from esm.sources import _keep_epoch_timestamps
    from streamline.emulator import Emulator

    emulator = Emulator.start()
    saved = dict(os.environ)
    os.environ.update(emulator.env())
    try:
        session = boto3.Session(region_name="us-east-1")
        kinesis = session.client("kinesis")
        kinesis_epoch = session.client("kinesis")
        _keep_epoch_timestamps(kinesis_epoch)
        stream = "bench-esm"
        kinesis.create_stream(StreamName=stream, ShardCount=1)
        summary = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]
        stream_arn = summary["StreamARN"]
        for start in range(0, RECORDS, 500):
            kinesis.put_records(
                StreamName=stream,
                Records=[
                    {"PartitionKey": f"k{i % 64}", "Data": PAYLOAD}
                    for i in range(start, min(start + 500, RECORDS))
                ],
            )
        shard_id = kinesis.list_shards(StreamName=stream)["Shards"][0]["ShardId"]
        _bare_loop(kinesis, stream, shard_id, RECORDS)  # warm the server's code paths
        for batch_size in (100, 10000):
            # Interleaved rounds, best of each: the machine is shared, and noise only ever
            # slows a round down.
            bare_s = bare_epoch_s = runner_s = float("inf")
            for _ in range(ROUNDS):
                bare_s = min(bare_s, _bare_loop(kinesis, stream, shard_id, RECORDS))
                bare_epoch_s = min(
                    bare_epoch_s, _bare_loop(kinesis_epoch, stream, shard_id, RECORDS)
                )
                with TemporaryDirectory() as state_dir:
                    runner_s = min(
                        runner_s, _runner(session, stream_arn, batch_size, RECORDS, Path(state_dir))
                    )
            bare_rps = RECORDS / bare_s
            bare_epoch_rps = RECORDS / bare_epoch_s
            runner_rps = RECORDS / runner_s
            yield {
                "name": f"esm_runner_vs_bare_getrecords_batch{batch_size}",
                "records": RECORDS,
                "shards": 1,
                "batch_size": batch_size,
                "rounds": ROUNDS,
                "bare_getrecords_rps": round(bare_rps),
                "runner_rps": round(runner_rps),
                "ratio": round(runner_rps / bare_rps, 3),
                "target_ratio": TARGET_RATIO,
                "meets_target": runner_rps / bare_rps >= TARGET_RATIO,
                "bare_getrecords_epoch_timestamps_rps": round(bare_epoch_rps),
                "ratio_same_parsing": round(runner_rps / bare_epoch_rps, 3),
            }
    finally:
        os.environ.clear()
        os.environ.update(saved)
        emulator.stop()


if __name__ == "__main__":
    import json

    for result in run():
        print(json.dumps(result), flush=True)
