"""`make demo`: the whole pipeline on one machine, then torn down whatever happened.

1. `make infra-up`: the Terraform stack on the embedded emulator (or on AWS_ENDPOINT_URL);
2. the local ESM runner for the stack's function, in the background;
3. load.py: a few thousand events over Kinesis and the DynamoDB table, some of them poison;
4. verify.py: waits for the pipeline to drain (processing), then prints the verified summary
   and sets the exit code;
5. always: the runner stopped by its PID, `make infra-down` (which stops the emulator).

It prints one line per phase with its duration, the verified summary and where the logs are:
build/demo/terraform.log (Terraform, up and down), runner.log (the runner and the handler, whose
workers write to the runner's stderr), load.log, verify.log. On a terminal the running phase
shows a live bar; otherwise a plain line every HEARTBEAT_S. `-v` prints every line of every
phase as it comes. A failed phase prints its name, the last lines of its log and the log's path.

build/demo/ holds payloads (the manifest) and the handler's logs: its files are 0600 and the
directories created for them 0700 (`esm.private_files`).
"""

from __future__ import annotations

import argparse
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from rich.console import Console
from rich.progress import Progress as RichProgress
from rich.text import Text

from esm.private_files import create_private, make_private_dirs
from streamline.arguments import OneLineParser, integer, number
from streamline.emulator import DEFAULT_STATE_FILE as EMULATOR_STATE_FILE
from streamline.emulator import EMULATOR_ENV, StateFileError, read_state, stop_pid
from streamline.infra.offline import MissingTool, terraform_binary
from streamline.paths import REPO_ROOT
from streamline.tools.load import MAX_EVENTS
from streamline.tools.progress import PLAIN_INTERVAL_ENV, bar_columns, is_live_terminal, parse_line
from streamline.tools.stack import StackFileError, read_stack_file

STACK_FILE = REPO_ROOT / "build" / "stack.json"
DEMO_DIR = REPO_ROOT / "build" / "demo"
LOG_TAIL_LINES = 12  # of a failed phase's log
RUNNER_LOG_TAIL_LINES = 6  # of the runner's own lines, with -v (as before)
HEARTBEAT_S = 10.0  # a running phase's plain line, when the output is not a terminal
RUNNER_START_TIMEOUT_S = 60.0
# The children's plain progress lines, read here to draw the bars: often enough to look live.
CHILD_PROGRESS_INTERVAL_S = 0.5

# build/demo/*.log: what each holds, in the order the demo writes them.
LOG_CONTENTS = {
    "terraform.log": "Terraform, up and down (make infra-up / infra-down)",
    "runner.log": "the ESM runner and the handler (its workers write to the runner's stderr)",
    "load.log": "load.py",
    "verify.log": "verify.py: processing (its progress lines) and the report",
}

# What the Terraform log says, for the phase lines.
_PROVIDER_VERSION = re.compile(r"hashicorp/aws v(\d+\.\d+)")
_PROVIDER_KIND = re.compile(r"^(?:apply|destroy): [\d.]+ s \((\w+) provider")
_PLAN = re.compile(r"^Plan: (\d+) to add, (\d+) to change, (\d+) to destroy")
_RESOURCE_DONE = re.compile(r": (?:Creation|Modifications|Destruction) complete after")
_POISON_SENT = re.compile(r"^sent \d+ events .*; (\d+) poison\b")
_TERRAFORM_ACTIVITY = re.compile(
    r"^(?:module\.[^.]+\.)*(\S+): (Creating|Still creating|Destroying|Still destroying)"
)


class StepFailed(Exception):
    def __init__(self, step: str, returncode: int, reason: str | None = None):
        super().__init__(f"{step} failed ({reason or f'exit {returncode}'})")
        self.step = step
        self.returncode = returncode


def shown_path(path: Path) -> str:
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def log_tail(
    path: Path, lines: int, keep: Callable[[str], bool] = lambda line: True, since: int = 0
) -> list[str]:
    """The last `lines` lines of `path` that `keep`, from byte `since` on."""
    try:
        with path.open("rb") as log:
            log.seek(since)
            text = log.read().decode("utf-8", "replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if keep(line)][-lines:]


class Phase:
    """One running phase: its bar (a terminal) or its heartbeat lines (otherwise), and the
    words its ✓ line adds (`detail`)."""

    def __init__(self, screen: Screen, title: str, log: Path | None, unit: str, since: int):
        self.screen = screen
        self.title = title
        self.log = log
        self.log_since = since  # where this phase's part of the log starts (bytes)
        self.unit = unit
        self.detail = ""
        self.started = time.monotonic()
        self.done = 0
        self.total: int | None = None
        self.note = ""
        self._next_heartbeat = self.started + HEARTBEAT_S
        self._bar: RichProgress | None = None
        if screen.live:
            self._bar = RichProgress(*bar_columns(), console=screen.console, transient=True)
            self._task = self._bar.add_task(title, total=None, unit=unit, note="")
            self._bar.start()

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    def update(self, done: int | None = None, total: int | None = None, note: str = "") -> None:
        self.done = self.done if done is None else done
        self.total = self.total if total is None else total
        self.note = note or self.note
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done, total=self.total, note=self.note)

    def echo(self, line: str) -> None:
        """A line of the phase's output, shown with -v."""
        if self.screen.verbose:
            self.screen.out(line)

    def tick(self) -> None:
        """The heartbeat line, when one is due (never on a terminal: the bar is live)."""
        if self._bar is not None or self.screen.verbose:
            return
        if time.monotonic() >= self._next_heartbeat:
            self._next_heartbeat = time.monotonic() + HEARTBEAT_S
            counts = f"{self.done}/{self.total} {self.unit}" if self.total else ""
            said = ", ".join(part for part in (counts, self.note) if part)
            self.screen.out(f"  {self.title}: {said or 'running'} ({self.elapsed_s:.0f} s)")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


class Screen:
    """What the demo prints, on stdout: a line per phase, live bars on a terminal."""

    TITLE_WIDTH = 62

    def __init__(self, verbose: bool, console: Console | None = None):
        self.console = console or Console(highlight=False)
        self.verbose = verbose
        self.live = is_live_terminal(self.console.file) and not verbose

    def out(self, line: str, style: str | None = None) -> None:
        # Text: no markup read in a log line; soft_wrap: no wrapping at 80 columns in a pipe.
        self.console.print(Text(line, style=style or ""), soft_wrap=True)

    @contextmanager
    def phase(
        self, title: str, log: Path | None = None, unit: str = "events", since: int = 0
    ) -> Iterator[Phase]:
        """The phase's ✓ line when the block ends; its ✗ line, the tail of its part of the log
        (from byte `since`) and the log's path when it raises StepFailed (re-raised), its ✗
        line on an interrupt."""
        phase = Phase(self, title, log, unit, since)
        try:
            yield phase
        except StepFailed as exc:
            phase.close()
            self._failed(phase, str(exc).removeprefix(f"{exc.step} "))
            raise
        except KeyboardInterrupt:
            phase.close()
            self._line("✗", "red", f"{title}: interrupted", phase.elapsed_s, log)
            raise
        phase.close()
        self._line("✓", "green", f"{title}{phase.detail}", phase.elapsed_s, log)

    def _failed(self, phase: Phase, reason: str) -> None:
        self._line("✗", "red", f"{phase.title} {reason}", phase.elapsed_s, None)
        if phase.log is None:
            return
        tail = log_tail(phase.log, LOG_TAIL_LINES, since=phase.log_since)
        if tail:
            self.out(f"  last lines of {shown_path(phase.log)}:")
            for line in tail:
                self.out(f"    {line}", style="dim")
        self.out(f"  full log: {shown_path(phase.log)}")

    def _line(self, mark: str, style: str, title: str, seconds: float, log: Path | None) -> None:
        where = f"   log: {shown_path(log)}" if log is not None else ""
        text = Text.assemble((mark, style), f" {title:<{self.TITLE_WIDTH}} {seconds:6.1f} s{where}")
        self.console.print(text, soft_wrap=True)


class DemoLogs:
    """build/demo/*.log, each created once (0600) for the run and written line by line."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.written: list[Path] = []  # this run's, in the order they were started
        self._open: dict[str, BinaryIO] = {}
        self._sizes: dict[str, int] = {}

    def path(self, name: str) -> Path:
        return self.directory / f"{name}.log"

    def write(self, name: str, line: str) -> None:
        if name not in self._open:
            self._open[name] = create_private(self.path(name))
            self.written.append(self.path(name))
        data = line.encode("utf-8", "replace") + b"\n"
        self._open[name].write(data)
        self._open[name].flush()
        self._sizes[name] = self._sizes.get(name, 0) + len(data)

    def size(self, name: str) -> int:
        """Bytes written to the log this run: where a phase's part of it starts."""
        return self._sizes.get(name, 0)

    def close(self) -> None:
        for handle in self._open.values():
            handle.close()
        self._open.clear()


def _pump(stream, lines: queue.Queue) -> None:
    for raw in stream:
        lines.put(raw.decode("utf-8", "replace").rstrip("\n"))
    lines.put(None)


def run_logged(
    phase: Phase,
    command: list[str],
    env: dict[str, str],
    logs: DemoLogs,
    log_name: str,
    on_line: Callable[[str], None] | None = None,
    check: Callable[[], str | None] | None = None,
) -> int:
    """`command`'s output (stdout and stderr) into the log line by line, through `on_line`;
    returns its exit code. `check` is asked every tick: a reason to give up on the command."""
    env = {
        **env,
        PLAIN_INTERVAL_ENV: str(CHILD_PROGRESS_INTERVAL_S),
        "PYTHONUNBUFFERED": "1",
        "TTY_COMPATIBLE": "0",  # plain lines into our pipe, even with FORCE_COLOR set
    }
    logs.write(log_name, f"$ {' '.join(command)}")
    process = subprocess.Popen(
        command,
        env=env,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_pump, args=(process.stdout, lines), daemon=True).start()
    interrupted = False
    try:
        while True:
            try:
                line = lines.get(timeout=0.25)
            except queue.Empty:
                phase.tick()
                if check is not None and (reason := check()):
                    raise StepFailed(phase.title, 1, reason) from None
                continue
            if line is None:
                break
            logs.write(log_name, line)
            phase.echo(line)
            if on_line is not None:
                on_line(line)
            phase.tick()
        return process.wait()
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        if process.poll() is None:
            # A Ctrl-C reached it too: give it a moment to stop on its own; given up on: stop it.
            if not interrupted:
                process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        process.stdout.close()


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
    """The runner in the background, its stdout and stderr (with the handler's) in `log_path`."""
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


def _runner_line(line: str) -> bool:
    return line.startswith("[esm]")


def wait_for_runner(phase: Phase, runner: subprocess.Popen, log_path: Path) -> None:
    """Until the runner says it runs each mapping (it has read the function and its mappings);
    StepFailed if it exits first or takes too long."""
    deadline = time.monotonic() + RUNNER_START_TIMEOUT_S
    while True:
        running = log_tail(log_path, 1000, lambda line: line.startswith("[esm] running "))
        if running:
            phase.detail = f" (pid {runner.pid}, {len(running)} mapping(s))"
            return
        if runner.poll() is not None:
            raise StepFailed(phase.title, runner.returncode)
        if time.monotonic() > deadline:
            raise StepFailed(phase.title, 1, f"not running after {RUNNER_START_TIMEOUT_S:.0f} s")
        phase.tick()
        time.sleep(0.1)


def stop_runner(screen: Screen, runner: subprocess.Popen, log_path: Path) -> None:
    with screen.phase("runner stopped", log_path) as phase:
        if runner.poll() is None:
            stop_pid(runner.pid)
        runner.wait(timeout=15)
        summary = log_tail(log_path, 1, lambda line: line.startswith("[esm] summary: "))
        said = summary[0].removeprefix("[esm] summary: ") if summary else "no summary"
        phase.detail = f": {said}, exit {runner.returncode}"
    if screen.verbose:
        screen.out("runner: its last lines:")
        for line in log_tail(log_path, RUNNER_LOG_TAIL_LINES, _runner_line):
            screen.out(f"    {line}")


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
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="print every phase's output as it comes (Terraform's plan, load, verify)",
    )
    return parser.parse_args(argv)


class TerraformWatcher:
    """Reads Terraform's output for the phase: resources done of planned, what it is doing,
    and the provider (for the ✓ line)."""

    def __init__(self, phase: Phase):
        self.phase = phase
        self.version = ""
        self.kind = ""

    def __call__(self, line: str) -> None:
        if match := _PROVIDER_VERSION.search(line):
            self.version = match[1]
        elif match := _PROVIDER_KIND.match(line):
            self.kind = match[1]
        elif match := _PLAN.match(line):
            self.phase.update(done=0, total=sum(int(count) for count in match.groups()))
        elif _RESOURCE_DONE.search(line):
            self.phase.update(done=self.phase.done + 1)
        elif match := _TERRAFORM_ACTIVITY.match(line):
            self.phase.update(note=f"{match[2].lower()} {match[1]}")

    def provider(self) -> str:
        return " ".join(part for part in (self.kind, "provider", self.version) if part)


def infra_up(
    screen: Screen, logs: DemoLogs, make: str, batch_size: int
) -> tuple[dict[str, str], dict]:
    """Phase 1: the stack up; returns the steps' environment and build/stack.json."""
    variables = f"{os.environ.get('INFRA_VARS', '')} batch_size={batch_size}".strip()
    command = [make, "--no-print-directory", "infra-up", f"INFRA_VARS={variables}"]
    with screen.phase("stack up", logs.path("terraform"), unit="resources") as phase:
        terraform = TerraformWatcher(phase)
        returncode = run_logged(phase, command, dict(os.environ), logs, "terraform", terraform)
        if returncode != 0:
            raise StepFailed(phase.title, returncode)
        try:
            env = endpoint_env()
            stack = read_stack_file(STACK_FILE)
        except (StateFileError, StackFileError) as exc:
            raise StepFailed(phase.title, 1, str(exc)) from exc
        if not stack.get("function_name"):
            raise StepFailed(phase.title, 1, f"{STACK_FILE} names no function_name")
        resources = f", {phase.total} resources" if phase.total else ""
        phase.detail = f" (Terraform, {terraform.provider()}{resources})"
    return env, stack


def load(screen: Screen, logs: DemoLogs, args: argparse.Namespace, env, manifest: Path) -> None:
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
    with screen.phase("load", logs.path("load")) as phase:

        def on_line(line: str) -> None:
            if (snapshot := parse_line(line)) is not None:
                phase.update(done=snapshot.done, total=snapshot.total)
            elif (match := _POISON_SENT.match(line)) is not None:
                phase.note = f"{match[1]} poison"

        returncode = run_logged(phase, command, env, logs, "load", on_line)
        if returncode != 0:
            raise StepFailed(phase.title, returncode)
        phase.detail = f": {phase.done} events sent" + (f" ({phase.note})" if phase.note else "")


def verify(
    screen: Screen,
    logs: DemoLogs,
    args: argparse.Namespace,
    env: dict[str, str],
    manifest: Path,
    runner: subprocess.Popen,
    report: list[str],
) -> None:
    """Phases 4 and 5: processing (verify.py waiting for the pipeline to drain: events
    accounted for, keys settled) and verify (its report, added to `report`). StepFailed if
    the runner dies while verify waits for it, or verify finds the pipeline wrong."""
    command = [
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
    ]

    def runner_died() -> str | None:
        if runner.poll() not in (None, 0):
            return f"the runner exited with {runner.returncode}: see {shown_path(runner_log())}"
        return None

    with screen.phase("processing", logs.path("verify")) as phase:
        started = time.monotonic()

        def on_line(line: str) -> None:
            if (snapshot := parse_line(line)) is not None:
                phase.update(done=snapshot.done, total=snapshot.total, note=snapshot.note)
            else:
                report.append(line)

        returncode = run_logged(phase, command, env, logs, "verify", on_line, runner_died)
        rate = phase.done / max(time.monotonic() - started, 1e-9)
        note = f", {phase.note}" if phase.note else ""
        phase.detail = f": {phase.done}/{phase.total} events{note}, {rate:.0f} events/s"
    # verify.py judges and reports once the waiting is over; its time is in the line above.
    with screen.phase("verify", logs.path("verify")) as phase:
        if not report:
            raise StepFailed(phase.title, returncode or 1, "verify printed no report")
        if returncode != 0:
            raise StepFailed(phase.title, returncode, f"exit {returncode}: the report below")
        phase.detail = ": the report below"


def runner_log() -> Path:
    return DEMO_DIR / "runner.log"


def infra_down(screen: Screen, logs: DemoLogs, make: str, keep: bool, exit_code: int) -> int:
    """The stack down unless `keep`; returns the demo's exit code, a failed teardown counted
    when nothing failed before it."""
    if keep:
        screen.out("--keep: the stack stays up; `make infra-down` removes it")
        return exit_code
    command = [make, "--no-print-directory", "infra-down"]
    try:
        terraform_log = logs.path("terraform")
        since = logs.size("terraform")
        with screen.phase("tear down", terraform_log, "resources", since) as phase:
            terraform = TerraformWatcher(phase)
            returncode = run_logged(phase, command, dict(os.environ), logs, "terraform", terraform)
            if returncode != 0:
                raise StepFailed(phase.title, returncode)
            phase.detail = f" (Terraform destroy, {phase.done} resources)"
    except StepFailed as exc:
        screen.out("  remove what is left with `make infra-down`")
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
    screen = Screen(verbose=args.verbose)
    # Its files hold payloads (the manifest) and the handler's logs: owner-only.
    make_private_dirs(DEMO_DIR)
    logs = DemoLogs(DEMO_DIR)
    manifest = DEMO_DIR / "manifest.json"
    screen.out(
        f"streamline demo: {args.count} events over {args.keys} keys, Kinesis and DynamoDB "
        f"Streams, {args.poison_fraction:.1%} poison, BatchSize {args.batch_size}"
    )
    runner = None
    report: list[str] = []
    exit_code = 1
    try:
        env, stack = infra_up(screen, logs, make, args.batch_size)
        with screen.phase("runner started", runner_log()) as phase:
            # The runner exits on its own once idle; the margin covers load's start-up.
            runner = start_runner(stack["function_name"], env, runner_log(), until_idle_s=120)
            wait_for_runner(phase, runner, runner_log())
        load(screen, logs, args, env, manifest)
        verify(screen, logs, args, env, manifest, runner, report)
        exit_code = 0
    except StepFailed as exc:
        exit_code = exc.returncode or 1
    except KeyboardInterrupt:
        exit_code = 130
    finally:
        if runner is not None:
            stop_runner(screen, runner, runner_log())
        exit_code = infra_down(screen, logs, make, args.keep, exit_code)
        logs.close()
        screen.out("")
        for line in report or ["no summary: the demo stopped before verifying"]:
            screen.out(line)
        screen.out("")
        written = logs.written + ([runner_log()] if runner is not None else [])
        screen.out("full logs:")
        for path in sorted(written, key=lambda path: list(LOG_CONTENTS).index(path.name)):
            screen.out(f"  {shown_path(path):<26} {LOG_CONTENTS[path.name]}")
        outcome = "PASSED" if exit_code == 0 else "FAILED"
        screen.out(f"{outcome} in {time.monotonic() - started:.0f} s", style="bold")
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
