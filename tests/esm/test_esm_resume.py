"""Conformance: the runner's own checkpoints survive a SIGKILL — redelivery, never loss."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import CODE_DIR, FAST_FLAGS, REPO_ROOT, mapping


def _cli(harness, function_name: str, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "esm",
        "run",
        "--function-name",
        function_name,
        "--code-dir",
        str(CODE_DIR),
        "--state-dir",
        str(harness.state_dir),
        *FAST_FLAGS,
        *extra,
    ]


def test_resume_after_sigkill_redelivers_from_the_checkpoint_and_loses_nothing(harness):
    # Given 60 records and a slow handler, taking batches of 5
    arn = harness.create_stream()
    put = harness.put([(f"k{i % 4}", f"r{i}") for i in range(60)])
    positions = [int(r["SequenceNumber"]) for r in put]
    function = harness.create_function(
        "esm_handlers.record", environment={"ESM_TEST_SLEEP": "0.05"}
    )
    mapping_uuid = harness.create_mapping(
        function, arn, StartingPosition="TRIM_HORIZON", BatchSize=5
    )

    # When the runner is killed with SIGKILL part-way through
    proc = subprocess.Popen(
        _cli(harness, function.name),
        cwd=REPO_ROOT,
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while len(harness.invocations()) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    first_run = harness.delivered()
    assert 0 < len(first_run) < 60
    state_file = harness.state_dir / f"{function.name}-{mapping_uuid}.json"
    checkpoint = json.loads(state_file.read_text())["shards"]["shardId-000000000000"]
    settled = int(checkpoint["sequenceNumber"])
    time.sleep(0.3)  # the orphaned worker finishes its batch and exits on EOF
    first_run = harness.delivered()
    first_count = len(harness.invocations())

    # and started again
    result = subprocess.run(
        _cli(harness, function.name, "--until-idle", "0.5"),
        cwd=REPO_ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr

    # Then it resumed right after its checkpoint: nothing lost, redelivery only past it
    second_run = harness.invocations()[first_count:]
    second_sequence_numbers = [int(s) for e in second_run for s in e["sequenceNumbers"]]
    assert second_sequence_numbers == [p for p in positions if p > settled]
    assert set(first_run) | {d for e in second_run for d in e["data"]} == {
        f"r{i}" for i in range(60)
    }


def _recreate_stream(harness, kinesis) -> str:
    """Delete the stream and create it again under the same name: same ARN, sequence
    numbers that start again."""
    kinesis.delete_stream(StreamName=harness.name)
    for _ in range(200):
        names = kinesis.list_streams()["StreamNames"]
        if harness.name not in names:
            break
        time.sleep(0.05)
    time.sleep(0.01)  # a creation time of its own, even at moto's resolution
    return harness.create_stream(kinesis=kinesis)


@pytest.mark.parametrize("store", ["state-dir", "checkpoint-table"])
def test_positions_of_a_deleted_stream_are_not_resumed_on_a_new_one_of_the_same_name(
    harness, store, caplog
):
    # Given a run that settled three records of a stream
    kinesis = harness.client("kinesis")
    arn = harness.create_stream()
    harness.put([("k", f"old-{n}") for n in range(3)])
    function = harness.create_function("esm_handlers.record")
    where = (
        {"state_dir": harness.state_dir}
        if store == "state-dir"
        else {"checkpoint_table": f"{harness.name}-positions", "state_dir": None}
    )
    harness.run(function, [mapping(arn)], **where)

    # When the stream is deleted, created again under the same name, and given two records
    assert _recreate_stream(harness, kinesis) == arn
    harness.put([("k", "new-0"), ("k", "new-1")])
    with caplog.at_level(logging.WARNING, logger="esm"):
        harness.run(function, [mapping(arn)], **where)

    # Then the new stream is read from its start, not from the old stream's position, and
    # the runner says why
    assert harness.delivered() == ["old-0", "old-1", "old-2", "new-0", "new-1"]
    assert any("earlier stream of the same name" in r.getMessage() for r in caplog.records)


def test_positions_of_the_same_stream_are_resumed_without_a_warning(harness, caplog):
    arn = harness.create_stream()
    harness.put([("k", "a")])
    function = harness.create_function("esm_handlers.record")
    harness.run(function, [mapping(arn)])
    harness.put([("k", "b")])
    with caplog.at_level(logging.WARNING, logger="esm"):
        harness.run(function, [mapping(arn)])

    assert harness.delivered() == ["a", "b"]
    assert not any("earlier stream" in r.getMessage() for r in caplog.records)
