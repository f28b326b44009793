"""`make demo`: the whole pipeline on one machine, then torn down whatever happened.

1. `make infra-up`: the Terraform stack on the embedded emulator (or on AWS_ENDPOINT_URL);
2. the local ESM runner for the stack's function, in the background (its log in build/demo/);
3. load.py: a few thousand events over Kinesis and the DynamoDB table, some of them poison;
4. verify.py: waits for the pipeline to drain, prints the summary line, sets the exit code;
5. always: the runner stopped by its PID, `make infra-down` (which stops the emulator).

build/demo/ holds payloads (the manifest) and the handler's logs: its files are 0600 and the
directories created for them 0700 (`esm.private_files`).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from esm.private_files import create_private, make_private_dirs
from streamline.arguments import OneLineParser, integer, number
from streamline.emulator import DEFAULT_STATE_FILE as EMULATOR_STATE_FILE
from streamline.emulator import EMULATOR_ENV, StateFileError, read_state, stop_pid
from streamline.infra.offline import MissingTool, terraform_binary
from streamline.paths import REPO_ROOT
from streamline.tools.load import MAX_EVENTS
from streamline.tools.stack import StackFileError, read_stack_file

STACK_FILE = REPO_ROOT / "build" / "stack.json"
DEMO_DIR = REPO_ROOT / "build" / "demo"
RUNNER_LOG_TAIL_LINES = 6


class StepFailed(Exception):
    def __init__(self, step: str, returncode: int, reason: str | None = None):
        super().__init__(f"{step} failed ({reason or f'exit {returncode}'})")
        self.returncode = returncode


def say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def run_step(name: str, command: list[str], env: dict[str, str]) -> None:
    say(f"{name}: {' '.join(command)}")
    started = time.monotonic()
    returncode = subprocess.run(command, env=env, cwd=REPO_ROOT).returncode
    if returncode != 0:
        raise StepFailed(name, returncode)
    say(f"{name}: done in {time.monotonic() - started:.1f}s")


def endpoint_env() -> dict[str, str]:
    """The environment the demo's steps talk to AWS with: AWS_ENDPOINT_URL as given, or the
    embedded emulator `make infra-up` started (recorded in its state file)."""
    env = dict(os.environ)
    if not env.get("AWS_ENDPOINT_URL"):
        env["AWS_ENDPOINT_URL"] = read_state(EMULATOR_STATE_FILE)["endpoint"]
    for name, value in EMULATOR_ENV.items():
        env.setdefault(name, value)
    return env


def start_runner(function_name: str, env: dict[str, str], log_path: Path, until_idle_s: int):
    command = [
        sys.executable,
        "-m",
        "esm",
        "run",
        "--function-name",
        function_name,
        "--until-idle",
        str(until_idle_s),
        "--state-dir",
        str(DEMO_DIR / "esm-state"),
    ]
    say(f"runner: {' '.join(command[1:])} (log: {log_path.relative_to(REPO_ROOT)})")
    with create_private(log_path) as log:
        return subprocess.Popen(
            command,
            env=env,
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # our Ctrl-C handling stops it, by PID
        )


def stop_runner(runner: subprocess.Popen, log_path: Path) -> None:
    if runner.poll() is None:
        say(f"stopping the runner (pid {runner.pid})")
        stop_pid(runner.pid)
    runner.wait(timeout=15)
    # The runner's own lines (the handler's JSON logs are in the file).
    lines = [x for x in log_path.read_text(errors="replace").splitlines() if x.startswith("[esm]")]
    say(f"runner exited with {runner.returncode}; its last lines:")
    for line in lines[-RUNNER_LOG_TAIL_LINES:]:
        print(f"    {line}", flush=True)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


# Keyed state commits once per key per batch, so bigger batches share each commit among more
# records: at 500, 3,000 events over 60 keys take ~5x fewer commits than at Lambda's default.
DEMO_BATCH_SIZE = 500


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The demo's options, refused here (one line, exit 2) rather than by load.py or verify.py
    once the stack is up."""
    parser = OneLineParser(prog="demo.py", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--count", type=integer(1, MAX_EVENTS), default=3000, help="events (default 3000)"
    )
    # load.py needs a key per source, and the demo loads both.
    parser.add_argument("--keys", type=integer(2, MAX_EVENTS), default=60, help="keys (default 60)")
    parser.add_argument(
        "--poison-fraction",
        type=number(0, 1),
        default=0.005,
        help="share of events marked poison (default 0.005)",
    )
    parser.add_argument("--aggregate", action="store_true", help="KPL-aggregate Kinesis records")
    parser.add_argument(
        "--timeout",
        type=integer(0),
        default=300,
        help="seconds verify waits for the pipeline (default 300)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="leave the stack and emulator up (make infra-down)"
    )
    parser.add_argument(
        "--batch-size",
        type=integer(1, 10_000),
        default=DEMO_BATCH_SIZE,
        help=f"the mappings' BatchSize (default {DEMO_BATCH_SIZE}; the Terraform default is 100)",
    )
    return parser.parse_args(argv)


def infra_up(make: str, batch_size: int) -> tuple[dict[str, str], dict]:
    """Phase 1: the stack up; returns the steps' environment and build/stack.json."""
    variables = f"{os.environ.get('INFRA_VARS', '')} batch_size={batch_size}".strip()
    run_step(
        "infra-up",
        [make, "--no-print-directory", "infra-up", f"INFRA_VARS={variables}"],
        dict(os.environ),
    )
    try:
        env = endpoint_env()
        stack = read_stack_file(STACK_FILE)
    except (StateFileError, StackFileError) as exc:
        raise StepFailed("infra-up", 1, str(exc)) from exc
    if not stack.get("function_name"):
        raise StepFailed("infra-up", 1, f"{STACK_FILE} names no function_name")
    return env, stack


def load(args: argparse.Namespace, env: dict[str, str], manifest: Path) -> None:
    """Phase 3: the events onto the stream and the table, recorded in `manifest`."""
    command = [
        sys.executable,
        "scripts/load.py",
        "--stack",
        str(STACK_FILE),
        "--source",
        "both",
        "--count",
        str(args.count),
        "--keys",
        str(args.keys),
        "--poison-fraction",
        str(args.poison_fraction),
        "--manifest",
        str(manifest),
    ]
    if args.aggregate:
        command.append("--aggregate")
    run_step("load", command, env)


def verify(args: argparse.Namespace, env: dict[str, str], manifest: Path) -> tuple[str, int]:
    """Phase 4: verify.py's report printed; returns its summary line and exit code."""
    say("verify: waiting for the pipeline to drain")
    result = subprocess.run(
        [
            sys.executable,
            "scripts/verify.py",
            "--stack",
            str(STACK_FILE),
            "--manifest",
            str(manifest),
            "--timeout",
            str(args.timeout),
            "--settle",
            "30",
        ],
        env=env,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    print(result.stdout, end="", flush=True)
    summary = result.stdout.splitlines()[0] if result.stdout else "verify printed nothing"
    return summary, result.returncode


def infra_down(make: str, keep: bool, exit_code: int) -> int:
    """Phase 5: the stack down unless `keep`; returns the demo's exit code, a failed teardown
    counted when nothing failed before it."""
    if keep:
        say("--keep: the stack stays up; `make infra-down` removes it")
        return exit_code
    try:
        run_step("infra-down", [make, "--no-print-directory", "infra-down"], dict(os.environ))
    except StepFailed as exc:
        say(f"{exc}: remove what is left with `make infra-down`")
        return exit_code or exc.returncode
    return exit_code


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        terraform_binary()  # `make infra-up` needs it: say so before anything starts
    except MissingTool as exc:
        print(f"demo.py: {exc}", file=sys.stderr)
        return 2
    # A SIGTERM (CI cancelling, say) tears down like Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)
    make = os.environ.get("MAKE", "make")
    started = time.monotonic()
    # Its files hold payloads (the manifest) and the handler's logs: owner-only.
    make_private_dirs(DEMO_DIR)
    runner_log = DEMO_DIR / "esm.log"
    manifest = DEMO_DIR / "manifest.json"
    runner = None
    summary = "no summary: the demo stopped before verifying"
    exit_code = 1
    try:
        env, stack = infra_up(make, args.batch_size)
        # Phase 2. The runner exits on its own once idle; the margin covers load's start-up.
        runner = start_runner(stack["function_name"], env, runner_log, until_idle_s=120)
        load(args, env, manifest)
        summary, exit_code = verify(args, env, manifest)
    except StepFailed as exc:
        say(str(exc))
        exit_code = exc.returncode or 1
    except KeyboardInterrupt:
        say("interrupted")
        exit_code = 130
    finally:
        if runner is not None:
            stop_runner(runner, runner_log)
        exit_code = infra_down(make, args.keep, exit_code)
        say(f"{summary}")
        say(f"{'PASSED' if exit_code == 0 else 'FAILED'} in {time.monotonic() - started:.0f}s")
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
