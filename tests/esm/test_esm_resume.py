"""Conformance: the runner's own checkpoints survive a SIGKILL — redelivery, never loss."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from conftest import CODE_DIR, FAST_FLAGS, REPO_ROOT


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
