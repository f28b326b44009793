"""Contract violations through the pipeline: load.py --poison-kind mixed over both sources,
the local ESM runner driving the demo handler (its model refuses `n` sent as a string),
verify.py finding each violation parked at once and each handler poison parked after its
retries, every other event applied once and in order."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streamline.emulator import stop_pid
from streamline.paths import REPO_ROOT
from streamline.tools import load, verify

pytestmark = pytest.mark.integration

RUNNER_TIMEOUT_S = 150


def start_runner(stack: dict, stream_arn: str, state_dir: Path, log_path: Path):
    command = [
        sys.executable, "-m", "esm", "run",
        "--stream-arn", stream_arn,
        "--handler", "processor.handler.handler",
        "--env", f"CHECKPOINT_TABLE={stack['checkpoint_table_name']}",
        "--env", f"SINK_TABLE={stack['sink_table_name']}",
        "--env", f"POISON_QUEUE_URL={stack['poison_queue_url']}",
        "--env", "MAX_ATTEMPTS=2",
        "--env", "POWERTOOLS_LOG_LEVEL=WARNING",
        "--timeout", "30",
        "--batch-size", "100",
        "--starting-position", "TRIM_HORIZON",
        "--report-batch-item-failures",
        "--bisect-batch-on-function-error",
        "--until-idle", "3",
        "--progress-interval", "0",
        "--state-dir", str(state_dir),
    ]  # fmt: skip
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            command, cwd=REPO_ROOT, env=dict(os.environ), stdout=log, stderr=subprocess.STDOUT
        )


def test_contract_violations_are_parked_at_once_and_verified_as_such(demo_stack, tmp_path, capsys):
    manifest = tmp_path / "manifest.json"
    assert (
        load.main(
            [
                "--stack",
                demo_stack["path"],
                "--source",
                "both",
                "--count",
                "300",
                "--keys",
                "6",
                "--poison-fraction",
                "0.05",
                "--poison-kind",
                "mixed",
                "--seed",
                "3",
                "--manifest",
                str(manifest),
            ]
        )  # fmt: skip
        == 0
    )
    events = json.loads(manifest.read_text())["events"]
    poison = [e for e in events if e["poison"]]
    violations = [e for e in poison if e.get("poisonKind") == "contract"]
    assert {e["source"] for e in violations} == {"kinesis", "dynamodb"}
    assert len(violations) < len(poison)  # handler poison too

    runners = [
        start_runner(demo_stack, demo_stack[arn], tmp_path / arn, tmp_path / f"{arn}.log")
        for arn in ("kinesis_stream_arn", "source_table_stream_arn")
    ]
    try:
        deadline = time.monotonic() + RUNNER_TIMEOUT_S
        for runner in runners:
            runner.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        for runner in runners:
            if runner.poll() is None:
                stop_pid(runner.pid)
    logs = {p.name: p.read_text(errors="replace")[-2000:] for p in tmp_path.glob("*.log")}
    assert [r.returncode for r in runners] == [0, 0], logs

    code = verify.main([
        "--stack", demo_stack["path"], "--manifest", str(manifest),
        "--timeout", "30", "--settle", "5", "--poll", "0.5",
    ])  # fmt: skip

    out = capsys.readouterr().out
    assert code == 0, out
    assert (
        f"verified 300 events over 6 keys: {300 - len(poison)} applied in order, "
        f"{len(poison)} parked, 0 lost, 0 duplicated, 0 out of order"
    ) in out
    assert f"; {len(violations)} of the parked broke the event's contract" in out
