"""Benchmarks of the ordered batch processor (run through `make bench`).

- per_record_overhead: µs per record for one 10,000-record Kinesis batch over 1,000 keys,
  spent by a plain loop, by Powertools' BatchProcessor and by OrderedProcessor (memory store),
  each with the same no-op record handler that reads the record's bytes;
- peak_memory: tracemalloc peak while OrderedProcessor handles that batch, against the size
  of the event itself;
- checkpoint_writes: against moto's server, DynamoDB checkpoint writes per batch versus the
  distinct keys in the batch.
"""

from __future__ import annotations

import base64
import json
import logging
import statistics
import time
import tracemalloc
from collections.abc import Callable, Iterator

from processor import OrderedProcessor
from processor.checkpoint import DynamoDBCheckpointStore, MemoryCheckpointStore
from processor.poison import MemoryPoisonSink
from processor.testing import event, kinesis_record

RECORDS = 10_000
KEYS = 1_000
REPEATS = 7


def make_batch(records: int = RECORDS, keys: int = KEYS, first_sequence: int = 0) -> dict:
    base = 49590338271490256608559692538361571095921575989136588898 + first_sequence
    return event(
        *[
            kinesis_record(f"key-{i % keys:04d}", base + i, {"key": i % keys, "n": i // keys})
            for i in range(records)
        ]
    )


def quiet_logger() -> logging.Logger:
    logger = logging.getLogger("streamline.bench")
    logger.addHandler(logging.NullHandler())
    logger.propagate = False
    return logger


def plain_loop(batch: dict) -> None:
    for record in batch["Records"]:
        base64.b64decode(record["kinesis"]["data"])


def powertools_batch(batch: dict) -> None:
    from aws_lambda_powertools.utilities.batch import (
        BatchProcessor,
        EventType,
        process_partial_response,
    )

    processor = BatchProcessor(event_type=EventType.KinesisDataStreams)
    process_partial_response(
        event=batch,
        record_handler=lambda record: record.kinesis.data_as_bytes(),
        processor=processor,
        context=None,
    )


def ordered(batch: dict) -> None:
    processor = OrderedProcessor(
        lambda record: record.data,
        checkpoints=MemoryCheckpointStore(),
        poison=MemoryPoisonSink(),
        logger=quiet_logger(),
    )
    processor.process(batch)


def median_us_per_record(run: Callable[[dict], None], batch: dict) -> float:
    samples = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        run(batch)
        samples.append((time.perf_counter() - started) / len(batch["Records"]) * 1e6)
    return statistics.median(samples)


def bench_overhead(batch: dict) -> dict:
    figures = {
        "plain_loop_us_per_record": median_us_per_record(plain_loop, batch),
        "powertools_batch_processor_us_per_record": median_us_per_record(powertools_batch, batch),
        "ordered_processor_us_per_record": median_us_per_record(ordered, batch),
    }
    figures = {name: round(value, 3) for name, value in figures.items()}
    figures["ordered_vs_powertools"] = round(
        figures["ordered_processor_us_per_record"]
        / figures["powertools_batch_processor_us_per_record"],
        3,
    )
    return {
        "name": "processor.per_record_overhead",
        "records": RECORDS,
        "keys": KEYS,
        "repeats": REPEATS,
        **figures,
    }


def bench_memory(batch: dict) -> dict:
    event_bytes = len(json.dumps(batch).encode())
    tracemalloc.start()
    ordered(batch)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "name": "processor.peak_memory",
        "records": RECORDS,
        "event_json_bytes": event_bytes,
        "peak_traced_bytes": peak,
        "peak_vs_event": round(peak / event_bytes, 3),
    }


def bench_checkpoint_writes() -> Iterator[dict]:
    from streamline.emulator import Emulator, emulator_client

    emulator = Emulator.start()
    try:
        client = emulator_client("dynamodb", emulator.endpoint)
        client.create_table(
            TableName="bench-checkpoints",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        for records, keys in ((1_000, 10), (1_000, 100), (1_000, 1_000)):
            store = DynamoDBCheckpointStore("bench-checkpoints", boto3_client=client)
            processor = OrderedProcessor(
                lambda record: None,
                checkpoints=store,
                poison=MemoryPoisonSink(),
                logger=quiet_logger(),
            )
            batch = make_batch(records, keys, first_sequence=records * keys)
            started = time.perf_counter()
            processor.process(batch)
            elapsed_s = time.perf_counter() - started
            yield {
                "name": "processor.checkpoint_writes",
                "endpoint": "moto",
                "records": records,
                "distinct_keys": keys,
                "checkpoint_writes": store.stats.writes,
                "checkpoint_reads": store.stats.reads,
                "batch_seconds": round(elapsed_s, 3),
            }
    finally:
        emulator.stop()


def run() -> Iterator[dict]:
    batch = make_batch()
    yield bench_overhead(batch)
    yield bench_memory(batch)
    yield from bench_checkpoint_writes()
