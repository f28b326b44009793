"""End to end, small: load.py over both sources (Kinesis KPL-aggregated, some poison), the
local ESM runner driving the demo handler, verify.py checking every event applied once and
in order per key or parked with its payload. Resources are made with boto3.

Then the demo itself (`make demo`'s scripts/demo.py, Terraform on its own embedded emulator)
as a new user reads it: a line per phase, the verified summary and where the full logs are,
in at most ~60 lines; a failing phase named with the tail of its log and the log's path."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys

import pytest

from streamline.infra import offline
from streamline.paths import REPO_ROOT
from streamline.tools import load, verify

pytestmark = pytest.mark.integration

DEMO_TIMEOUT_S = 600
MAX_DEMO_LINES = 60
DEMO_PHASES = ("stack up", "runner started", "load", "processing", "verify", "tear down")


def test_every_event_is_applied_once_in_order_or_parked_with_its_payload(
    demo_stack, process_demo_stack, tmp_path, capsys
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

    process_demo_stack()

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


# --- the demo as a new user reads it ---------------------------------------------------------


def run_demo(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """scripts/demo.py as `make demo` runs it, its stdout and stderr together, as a reader
    of a CI log or `make demo | tee` gets them (not a terminal: no live bars)."""
    try:
        offline.terraform_binary()
    except FileNotFoundError as exc:
        pytest.fail(f"the demo needs Terraform: {exc}", pytrace=False)
    if shutil.which(env.get("MAKE", "make")) is None:
        pytest.fail("the demo needs make", pytrace=False)
    return subprocess.run(
        [sys.executable, "scripts/demo.py", *args],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=DEMO_TIMEOUT_S,
    )


def demo_env(**extra: str) -> dict[str, str]:
    """The demo's own embedded emulator, whatever endpoint this test session uses."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
    env.pop("INFRA_VARS", None)
    return {**env, **extra}


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_normal_demo_prints_a_line_per_phase_the_summary_and_where_the_logs_are():
    result = run_demo("--count", "600", "--keys", "12", env=demo_env())

    lines = result.stdout.splitlines()
    assert result.returncode == 0, result.stdout
    assert len(lines) <= MAX_DEMO_LINES, result.stdout
    for phase in DEMO_PHASES:
        assert any(line.startswith(f"✓ {phase}") and " s" in line for line in lines), phase
    assert any(line.startswith("verified 600 events over 12 keys: ") for line in lines)
    for log in ("terraform.log", "runner.log"):
        assert f"build/demo/{log}" in result.stdout
    assert lines[-1].startswith("PASSED in ")


def test_a_failing_phase_prints_its_name_the_tail_of_its_log_and_the_path():
    # Given an endpoint nothing answers at: Terraform's phase fails at once, nothing is made.
    env = demo_env(AWS_ENDPOINT_URL=f"http://127.0.0.1:{closed_port()}")

    result = run_demo("--count", "10", "--keys", "2", env=env)

    out = result.stdout
    assert result.returncode != 0, out
    assert "✗ stack up failed" in out
    assert "  last lines of build/demo/terraform.log:" in out
    assert "does not answer" in out  # stack.py's reason, from the log's tail
    assert "  full log: build/demo/terraform.log" in out
    assert "✗ load" not in out and "✓ runner started" not in out
    assert out.splitlines()[-1].startswith("FAILED in ")
