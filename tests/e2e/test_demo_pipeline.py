"""End to end, small: load.py over both sources (Kinesis KPL-aggregated, some poison), the
local ESM runner driving the demo handler, verify.py checking every event applied once and
in order per key or parked with its payload. Resources are made with boto3 (the Terraform
path is `make demo`'s)."""

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


def test_every_event_is_applied_once_in_order_or_parked_with_its_payload(
    demo_stack, tmp_path, capsys
):
    manifest = tmp_path / "manifest.json"
    assert (
        load.main(
            [
                "--stack",
                demo_stack["path"],
                "--source",
                "both",
                "--count",
                "400",
                "--keys",
                "10",
                "--poison-fraction",
                "0.02",
                "--aggregate",
                "--aggregate-max-records",
                "10",
                "--manifest",
                str(manifest),
            ]
        )  # fmt: skip
        == 0
    )
    events = json.loads(manifest.read_text())["events"]
    poison = [e for e in events if e["poison"]]
    assert {e["source"] for e in poison} == {"kinesis", "dynamodb"}

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
        f"verified 400 events over 10 keys: {400 - len(poison)} applied in order, "
        f"{len(poison)} parked, 0 lost, 0 duplicated, 0 out of order"
    ) in out
