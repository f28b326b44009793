"""load.py on bad input: a usage error or "nothing sent" (exit 2) with one clear line, never
a traceback, and no manifest written. Interrupted or killed, it leaves this run's manifest
marked incomplete, never the previous run's."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from unreachable_aws import no_credentials, unreachable_endpoint

from streamline.paths import REPO_ROOT
from streamline.tools import load, verify


@pytest.mark.parametrize(
    ("argv", "phrase"),
    [
        pytest.param(
            ["--workers", "0"], "argument --workers: must be from 1 to 64, got 0", id="w0"
        ),
        pytest.param(
            ["--count", "-5"], "argument --count: must be from 1 to 10000000, got -5", id="c-5"
        ),
        pytest.param(
            ["--count", "0"], "argument --count: must be from 1 to 10000000, got 0", id="c0"
        ),
        pytest.param(
            ["--count", "10000001"],
            "argument --count: must be from 1 to 10000000, got 10000001",
            id="count-past-what-the-manifest-holds",
        ),
        pytest.param(
            ["--workers", "1000000"], "argument --workers: must be from 1 to 64", id="w-million"
        ),
        pytest.param(["--keys", "0"], "argument --keys: must be from 1 to", id="keys0"),
        pytest.param(
            ["--payload-size", "-1"],
            "argument --payload-size: must be from 0 to 100000, got -1",
            id="payload-negative",
        ),
        pytest.param(
            ["--payload-size", "200000"],
            "argument --payload-size: must be from 0 to 100000",
            id="payload-too-big-for-the-poison-queue",
        ),
        pytest.param(
            ["--poison-fraction", "7"],
            "argument --poison-fraction: must be a finite number from 0 to 1, got 7",
            id="poison-7",
        ),
        pytest.param(
            ["--poison-fraction", "nan"], "argument --poison-fraction: must be", id="poison-nan"
        ),
        pytest.param(
            ["--rate", "-3"],
            "argument --rate: must be a finite number at least 0, got -3",
            id="rate-3",
        ),
        pytest.param(["--rate", "fast"], "argument --rate: 'fast' is not a number", id="rate-word"),
        pytest.param(
            ["--aggregate-max-records", "0"],
            "argument --aggregate-max-records: must be at least 1",
            id="aggregate-0",
        ),
        pytest.param(["--count", "1.5"], "argument --count: '1.5' is not an integer", id="c1.5"),
        pytest.param(
            ["--run-id", "Run_1"], "argument --run-id: must be 1-16 lowercase", id="bad-run-id"
        ),
    ],
)
def test_numbers_out_of_range_are_a_usage_error(capsys, tmp_path, argv, phrase):
    manifest = tmp_path / "manifest.json"

    with pytest.raises(SystemExit) as exited:
        load.main([*argv, "--manifest", str(manifest)])

    err = capsys.readouterr().err
    assert exited.value.code == 2
    assert phrase in err.splitlines()[-1] and "Traceback" not in err
    assert not manifest.exists()


class Setup:
    def __init__(self, stack: dict, tmp_path, monkeypatch):
        self.stack = stack
        self.tmp = tmp_path
        self.monkeypatch = monkeypatch
        self.manifest = tmp_path / "manifest.json"

    def file(self, name: str, text: str) -> str:
        path = self.tmp / name
        path.write_text(text)
        return str(path)

    def args(self, *extra: str, stack: str | None = None) -> list[str]:
        return [
            "--stack",
            stack or self.stack["path"],
            "--count",
            "10",
            "--keys",
            "2",
            "--manifest",
            str(self.manifest),
            *extra,
        ]


def without_credentials(setup: Setup) -> list[str]:
    no_credentials(setup.monkeypatch, setup.tmp)
    return setup.args()


def endpoint_down(setup: Setup) -> list[str]:
    unreachable_endpoint(setup.monkeypatch)
    return setup.args()


@pytest.mark.integration
@pytest.mark.parametrize(
    ("build", "phrase"),
    [
        pytest.param(
            lambda s: s.args(stack=str(s.tmp / "missing.json")),
            "missing.json does not exist",
            id="stack-file-missing",
        ),
        pytest.param(
            lambda s: s.args(stack=s.file("bad.json", "{not json")),
            "is not JSON",
            id="stack-file-corrupt",
        ),
        pytest.param(
            lambda s: s.args(stack=s.file("str.json", '"stack"')),
            "holds a JSON str, not an object",
            id="stack-file-not-an-object",
        ),
        pytest.param(
            lambda s: s.args(stack=s.file("empty.json", "{}")),
            "no Kinesis stream: pass --stack or --kinesis-stream-name",
            id="stack-without-names",
        ),
        pytest.param(
            lambda s: s.args("--kinesis-stream-name", "no-such-stream"),
            "Kinesis stream no-such-stream: does not exist",
            id="wrong-stream",
        ),
        pytest.param(
            lambda s: s.args("--source-table-name", "no-such-table"),
            "source table no-such-table: does not exist",
            id="wrong-table",
        ),
        pytest.param(
            lambda s: s.args("--keys", "1"),
            "need at least one key per source (kinesis, dynamodb), got 1",
            id="fewer-keys-than-sources",
        ),
        pytest.param(endpoint_down, "Could not connect to the endpoint URL", id="endpoint-down"),
        pytest.param(without_credentials, "no AWS credentials", id="no-credentials"),
    ],
)
def test_what_cannot_be_sent_exits_2_with_one_line_and_no_manifest(
    demo_stack, tmp_path, monkeypatch, capsys, build, phrase
):
    setup = Setup(demo_stack, tmp_path, monkeypatch)

    code = load.main(build(setup))

    captured = capsys.readouterr()
    assert code == load.ExitCode.CANNOT_START == 2
    [line] = captured.err.splitlines()
    assert line.startswith("load: nothing sent: ") and phrase in line, line
    assert not setup.manifest.exists()


def test_help_documents_every_exit_code(capsys):
    with pytest.raises(SystemExit):
        load.main(["--help"])

    out = capsys.readouterr().out
    for code in load.ExitCode:
        assert f"\n  {code.value:<4} " in out


# --- interrupted and killed runs (a real process) ----------------------------------------------


def start_load(stack: dict, manifest: Path, log: Path) -> subprocess.Popen:
    """A slow load (20 events/s) in its own process."""
    command = [
        sys.executable,
        "scripts/load.py",
        "--stack",
        stack["path"],
        "--count",
        "400",
        "--keys",
        "4",
        "--rate",
        "20",
        "--manifest",
        str(manifest),
    ]
    with open(log, "wb") as out:
        return subprocess.Popen(
            command, cwd=REPO_ROOT, env=dict(os.environ), stdout=out, stderr=subprocess.STDOUT
        )


def wait_for_run(manifest: Path, other_than: str | None, timeout_s: float = 20) -> dict:
    """The manifest once a run other than `other_than` has written it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if manifest.exists():
            written = json.loads(manifest.read_text())
            if written["runId"] != other_than:
                return written
        time.sleep(0.05)
    raise AssertionError(f"no new run wrote {manifest} in {timeout_s}s")


@pytest.mark.integration
def test_a_killed_load_leaves_its_own_manifest_incomplete_not_the_last_runs(
    demo_stack, tmp_path, capsys
):
    manifest = tmp_path / "manifest.json"
    first_run = ["--stack", demo_stack["path"], "--count", "20", "--manifest", str(manifest)]
    assert load.main(first_run) == load.ExitCode.OK
    first = json.loads(manifest.read_text())
    assert first["complete"]
    proc = start_load(demo_stack, manifest, tmp_path / "load.log")
    try:
        second = wait_for_run(manifest, first["runId"])
        time.sleep(0.3)  # some events out
    finally:
        proc.kill()
        proc.wait()
    capsys.readouterr()

    code = verify.main(["--stack", demo_stack["path"], "--manifest", str(manifest), "--no-wait"])

    assert not second["complete"]
    assert code == verify.ExitCode.CANNOT_CHECK
    err = capsys.readouterr().err
    assert f"is incomplete: load.py (run {second['runId']}) stopped" in err


@pytest.mark.integration
def test_ctrl_c_ends_load_with_130_one_line_and_an_incomplete_manifest(demo_stack, tmp_path):
    manifest = tmp_path / "manifest.json"
    log = tmp_path / "load.log"
    proc = start_load(demo_stack, manifest, log)
    try:
        wait_for_run(manifest, None)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    output = log.read_text()
    assert code == 130, output
    assert "Traceback" not in output
    assert output.splitlines()[-1] == (
        f"load: interrupted (SIGINT); manifest {manifest} marked incomplete"
    )
    written = json.loads(manifest.read_text())
    assert not written["complete"] and written["eventCount"] == 400
    assert 0 < sum("sequenceNumber" in e for e in written["events"]) < 400
