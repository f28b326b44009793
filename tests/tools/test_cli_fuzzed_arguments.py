"""Every command-line tool, given hostile arguments, says one line naming what is wrong and exits
non-zero, without a traceback; given valid ones it gets past its arguments.

A property test draws argv from each tool's real flags, each value either one the tool accepts
or a hostile one (NaN, infinities, numbers out of range, empty strings, unknown flags and
choices, a flag without its value), so the test knows which argv are valid. It calls the
tools' `main(argv)` in-process where the test's surroundings make a valid run end at once: a
stack file that does not exist (load, verify, replay), no `terraform` on PATH (demo, infra),
no emulator recorded (emulator stop/env). Tools whose valid run would serve, build or start an
emulator (the proxy, `emulator start`, bench, ...) have the parser their `main` starts with
called instead, with valid and hostile argv alike: a regression there fails the test rather
than starting a server from it.

The subprocess tests below cover what only a real process shows: `make infra-up` and
`python -m streamline.infra.stack` without terraform, a corrupt stack file and an unreachable
endpoint given to the scripts.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import esm.cli
from streamline import bench, demo, emulator
from streamline.emulator import free_port
from streamline.infra import lambda_zip, offline
from streamline.infra import stack as infra_stack
from streamline.paths import REPO_ROOT
from streamline.tools import load, proxy, replay, verify
from streamline.tools.manifest import RUN_ID_PATTERN, write_manifest

# Each tool's property runs this many examples (in-process, milliseconds each).
EXAMPLES_PER_TOOL = 60

# --- values -------------------------------------------------------------------------------------

NAMES = st.from_regex(r"[a-z0-9][a-z0-9._-]{0,15}", fullmatch=True)
EMPTY = st.sampled_from(["", " ", "\t"])
NOT_NUMBERS = st.sampled_from(["", " ", "ten", "1,5", "0x", "-x", "--", "12abc"])
NOT_INTEGERS = NOT_NUMBERS | st.sampled_from(["1.5", "nan", "inf", "-inf", "1e3", "0x10"])
NOT_FINITE = st.sampled_from(["nan", "NaN", "-nan", "inf", "-inf", "Infinity", "1e400", "-1e400"])
PLENTY = 10**12  # the range drawn from where a bound is open


@dataclass(frozen=True)
class Flag:
    """One option: `good` draws values the tool accepts, `bad` values it must refuse (None:
    every string is acceptable). A flag without a value (`good` None) is given bare; its
    hostile form is `--flag=value`."""

    name: str
    good: st.SearchStrategy[str] | None
    bad: st.SearchStrategy[str] | None = None
    required: bool = False


def integer(
    name: str, minimum: int | None = None, maximum: int | None = None, required: bool = False
) -> Flag:
    low = -PLENTY if minimum is None else minimum
    high = PLENTY if maximum is None else maximum
    bad = [NOT_INTEGERS]
    if minimum is not None:
        bad.append(st.integers(max_value=minimum - 1).map(str))
    if maximum is not None:
        bad.append(st.integers(min_value=maximum + 1).map(str))
    return Flag(name, st.integers(low, high).map(str), st.one_of(bad), required)


def number(
    name: str, minimum: float | None = None, maximum: float | None = None, above: bool = False
) -> Flag:
    finite = {"allow_nan": False, "allow_infinity": False}
    good = st.floats(minimum, maximum, exclude_min=above and minimum is not None, **finite)
    bad = [NOT_NUMBERS, NOT_FINITE]
    if minimum is not None:
        below = st.floats(max_value=minimum, **finite)
        bad.append(below.filter(lambda v: v <= minimum if above else v < minimum).map(repr))
    if maximum is not None:
        bad.append(st.floats(min_value=maximum, **finite).filter(lambda v: v > maximum).map(repr))
    return Flag(name, good.map(repr), st.one_of(bad))


def text(name: str, good: st.SearchStrategy[str] = NAMES) -> Flag:
    """A name, URL or path: anything but empty."""
    return Flag(name, good, EMPTY)


def choice(name: str, choices: Sequence[str]) -> Flag:
    words = st.text("abcdefghijklmnopqrstuvwxyz_", max_size=10)
    return Flag(name, st.sampled_from(choices), words.filter(lambda w: w not in choices))


def switch(name: str) -> Flag:
    return Flag(name, None, st.just("1"))


def anything(name: str, good: st.SearchStrategy[str] = NAMES) -> Flag:
    """A value the tool takes as it is (a name it does not check)."""
    return Flag(name, good)


# --- tools ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Valid:
    """What a run with valid arguments does in the test's surroundings."""

    code: int
    says: str


@dataclass(frozen=True)
class Tool:
    """A tool under test, called with `command` + drawn flags + `tail`. `call` is its `main`
    where a valid run ends at once in the test's surroundings (`valid` says how); else the
    parser its `main` starts with, since a valid run would serve, build or start an emulator:
    there a valid argv must get past it, and a hostile one can never start anything."""

    name: str
    call: Callable[[list[str]], object]
    flags: tuple[Flag, ...]
    command: tuple[str, ...] = ()
    valid: Valid | None = None
    tail: Callable[[Path], list[str]] = lambda _tmp: []
    # Draws extra argv and the culprits it adds (an argument group's rule, say).
    extra: Callable[[st.DataObject], tuple[list[str], list[str]]] | None = None
    one_line: bool = True  # the whole of stderr is one line, not only its last line
    without_terraform: bool = False


MISSING_STACK = Valid(2, "does not exist: run `make infra-up`, or pass --stack FILE")
NO_TERRAFORM = Valid(2, "terraform not found on PATH")


def missing_stack(tmp: Path) -> list[str]:
    return ["--stack", str(tmp / "no-stack.json")]


def replay_target(data: st.DataObject) -> tuple[list[str], list[str]]:
    """Exactly one of --to-stream and --to-handler is required."""
    handler = ["--to-handler", data.draw(NAMES.map(lambda n: f"{n}.handler"))]
    target = data.draw(st.sampled_from(["stream", "handler", "both", "neither"]))
    return {
        "stream": (["--to-stream"], []),
        "handler": (handler, []),
        "both": (["--to-stream", *handler], ["--to-stream", "--to-handler"]),
        "neither": ([], ["--to-stream", "--to-handler"]),
    }[target]


def state_file(tmp: Path) -> st.SearchStrategy[str]:
    return NAMES.map(lambda n: str(tmp / f"{n}-state.json"))


STACK_NAME_FLAGS = {
    name: text(name)
    for name in (
        "--kinesis-stream-name",
        "--kinesis-stream-arn",
        "--source-table-name",
        "--sink-table-name",
        "--poison-queue-url",
        "--on-failure-queue-url",
    )
}

SECONDS = ("--until-idle", "--poll-interval", "--retry-backoff", "--max-retry-backoff")
SECONDS += ("--throttle-backoff", "--max-throttle-backoff", "--shard-refresh")
SECONDS += ("--progress-interval",)


def benchmark_names(data: st.DataObject) -> tuple[list[str], list[str]]:
    return data.draw(st.lists(st.sampled_from(list(bench.BENCHMARKS)), max_size=3)), []


RATE = number("--rate", 0, 1)
# A third at most each, so the proxy's three rates never add up to more than 1.
PROXY_RATE = st.floats(0, 0.33).map(repr)


@functools.cache
def tools(tmp: Path) -> list[Tool]:
    infra_flags = (
        choice("--provider", ["offline", "registry"]),
        text("--work-dir", NAMES.map(lambda n: str(tmp / n))),
        text("--mirror", NAMES.map(lambda n: str(tmp / n))),
        text("--lambda-zip", NAMES.map(lambda n: str(tmp / f"{n}.zip"))),
        text("--stack-json", NAMES.map(lambda n: str(tmp / f"{n}.json"))),
        text("--name"),
        switch("--aws"),
        Flag("--var", NAMES.map(lambda n: f"{n}=1"), EMPTY | NAMES | NAMES.map("={}".format)),
    )
    return [
        Tool(
            "load",
            load.main,
            (
                integer("--count", 1, load.MAX_EVENTS),
                integer("--keys", 1, load.MAX_EVENTS),
                choice("--source", ["kinesis", "dynamodb", "both"]),
                number("--rate", 0),
                integer("--payload-size", 0, load.MAX_PAYLOAD_SIZE),
                number("--poison-fraction", 0, 1),
                integer("--seed"),
                Flag(
                    "--run-id",
                    st.from_regex(RUN_ID_PATTERN, fullmatch=True),
                    EMPTY | NAMES.filter(lambda n: not RUN_ID_PATTERN.fullmatch(n)),
                ),
                switch("--aggregate"),
                integer("--aggregate-max-records", 1),
                integer("--workers", 1, load.MAX_WORKERS),
                text("--manifest"),
                STACK_NAME_FLAGS["--kinesis-stream-name"],
                STACK_NAME_FLAGS["--kinesis-stream-arn"],
                STACK_NAME_FLAGS["--source-table-name"],
            ),
            valid=MISSING_STACK,
            tail=missing_stack,
        ),
        Tool(
            "verify",
            verify.main,
            (
                text("--manifest"),
                number("--timeout", 0),
                number("--settle", 0),
                number("--poll", 0, above=True),
                switch("--no-wait"),
                STACK_NAME_FLAGS["--sink-table-name"],
                STACK_NAME_FLAGS["--poison-queue-url"],
                STACK_NAME_FLAGS["--on-failure-queue-url"],
            ),
            valid=MISSING_STACK,
            tail=missing_stack,
        ),
        Tool(
            "replay",
            replay.main,
            (
                choice("--from", ["poison", "on-failure", "both"]),
                Flag("--key", NAMES | st.just(" "), st.just("")),  # a key may be blank
                text("--error-type"),
                switch("--dry-run"),
                switch("--trust-handler"),
                integer("--parallelization-factor", 1, 10),
                integer("--limit", 1),
                integer("--batch-size", 1),
                integer("--visibility-timeout", 1, replay.MAX_VISIBILITY_TIMEOUT_S),
                STACK_NAME_FLAGS["--poison-queue-url"],
                STACK_NAME_FLAGS["--on-failure-queue-url"],
            ),
            valid=MISSING_STACK,
            tail=missing_stack,
            extra=replay_target,
        ),
        Tool(
            "emulator-stop",
            emulator.main,
            (text("--state-file", state_file(tmp)),),
            command=("stop",),
            valid=Valid(0, "no emulator recorded in"),
        ),
        Tool(
            "emulator-env",
            emulator.main,
            (text("--state-file", state_file(tmp)),),
            command=("env",),
            valid=Valid(2, "no emulator recorded in"),
        ),
        Tool(
            "emulator-start",
            emulator.build_parser().parse_args,
            (text("--state-file", state_file(tmp)), integer("--port", 1, 65535)),
            command=("start",),
        ),
        Tool(
            "emulator-serve",
            emulator.build_parser().parse_args,
            (integer("--port", 1, 65535, required=True),),
            command=("serve",),
        ),
        Tool(
            "demo",
            demo.main,
            (
                integer("--count", 1, load.MAX_EVENTS),
                integer("--keys", 2, load.MAX_EVENTS),
                number("--poison-fraction", 0, 1),
                switch("--aggregate"),
                integer("--timeout", 0),
                switch("--keep"),
                integer("--batch-size", 1, 10_000),
            ),
            valid=NO_TERRAFORM,
            without_terraform=True,
        ),
        *(
            Tool(
                f"infra-{command}",
                infra_stack.main,
                infra_flags + ((switch("--keep-emulator"),) if command == "down" else ()),
                command=(command,),
                valid=NO_TERRAFORM,
                # An existing zip, so that nothing is built were terraform's check to go.
                tail=lambda tmp: ["--lambda-zip", str(tmp / "lambda.zip")],
                without_terraform=True,
            )
            for command in ("up", "plan", "down")
        ),
        Tool(
            "lambda-zip",
            lambda_zip.build_parser().parse_args,
            (text("--out", NAMES.map(lambda n: str(tmp / f"{n}.zip"))),),
        ),
        *(
            Tool(
                f"offline-{command}",
                offline.build_parser().parse_args,
                (text("--out", NAMES.map(lambda n: str(tmp / n))),),
                command=(command,),
            )
            for command in ("copy", "mirror")
        ),
        Tool(
            "proxy",
            proxy.build_parser().parse_args,
            (
                Flag("--upstream", st.just("http://127.0.0.1:1"), EMPTY, required=True),
                number("--latency-ms", 0),
                integer("--port", 0, 65535),
                Flag("--throttle-rate", PROXY_RATE, RATE.bad),
                Flag("--error-rate", PROXY_RATE, RATE.bad),
                Flag("--drop-rate", PROXY_RATE, RATE.bad),
                integer("--seed"),
                text("--match"),
            ),
        ),
        Tool("bench", bench.wanted_benchmarks, (), extra=benchmark_names),
        Tool(
            "esm-run",
            esm.cli.build_parser().parse_args,
            (
                *(number(name, 0) for name in SECONDS),
                number("--inject-duplicate-delivery", 0, 1),
                number("--inject-stale-invocation", 0, 1),
                Flag("--batch-size", st.integers(1, 10_000).map(str), NOT_INTEGERS),
                Flag("--parallelization-factor", st.integers(1, 10).map(str), NOT_INTEGERS),
                Flag("--fault-seed", st.integers().map(str), NOT_INTEGERS),
                choice("--starting-position", ["TRIM_HORIZON", "LATEST", "AT_TIMESTAMP"]),
                Flag(
                    "--starting-position-timestamp",
                    st.sampled_from(["0", "1700000000", "2026-01-01T00:00:00Z"]),
                    st.sampled_from(["yesterday", "", "2026-13-01", "inf", "nan", "1e20"]),
                ),
                number("--timeout", 0, 900, above=True),
                integer("--memory-size", 128, 10240),
                Flag(
                    "--env", st.sampled_from(["A=1", "B=", "C=x=y"]), st.sampled_from(["A", "=1"])
                ),
                Flag(
                    "--log-level",
                    st.sampled_from(["DEBUG", "info", "Warning", "ERROR"]),
                    st.text("abcdefghijklmnopqrstuvwxyz_", max_size=10).filter(
                        lambda w: w.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
                    ),
                ),
                anything("--function-name"),
                anything("--handler"),
                switch("--bisect-batch-on-function-error"),
                switch("--report-batch-item-failures"),
            ),
            command=("run",),
        ),
    ]


# --- drawing an argv ------------------------------------------------------------------------------


@dataclass
class Drawn:
    argv: list[str]
    culprits: list[str]  # what a refusal must name; none: the argv is valid


def draw_argv(data: st.DataObject, tool: Tool, tmp: Path) -> Drawn:
    argv = list(tool.command)
    culprits: list[str] = []
    optional = [f for f in tool.flags if not f.required]
    chosen = [f for f in tool.flags if f.required]
    if optional:
        chosen += data.draw(st.lists(st.sampled_from(optional), unique_by=id, max_size=4))
    for flag in chosen:
        hostile = flag.bad is not None and data.draw(st.integers(0, 3)) == 0
        if flag.good is None:
            argv.append(f"{flag.name}={data.draw(flag.bad)}" if hostile else flag.name)
        else:
            argv += [flag.name, data.draw(flag.bad if hostile else flag.good)]
        if hostile:
            culprits.append(flag.name)
    if tool.extra is not None:
        more, blamed = tool.extra(data)
        argv += more
        culprits += blamed
    mistake = data.draw(st.sampled_from(["none"] * 4 + ["unknown flag", "stray word", "no value"]))
    if mistake == "unknown flag":  # no real flag starts with --zz: never an abbreviation
        unknown = "--zz" + data.draw(st.text("abcdefghij", min_size=1, max_size=6))
        argv.append(unknown)
        culprits.append(unknown)
    elif mistake == "stray word":
        stray = data.draw(NAMES.filter(lambda w: w not in bench.BENCHMARKS))
        argv.append(stray)
        culprits.append(stray)
    elif mistake == "no value":
        takes_value = [f for f in tool.flags if f.good is not None]
        if takes_value:
            flag = data.draw(st.sampled_from(takes_value))
            argv.append(flag.name)
            culprits.append(flag.name)
    return Drawn(argv + tool.tail(tmp), culprits)


def run(call: Callable[[list[str]], object], argv: list[str]) -> tuple[int, str]:
    """call(argv) in this process: its exit status (0 for a parser's namespace) and what it
    wrote to stderr."""
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            result = call(argv)
        except SystemExit as exc:
            result = exc.code
    if isinstance(result, str):  # SystemExit("message"): the interpreter prints it, exit 1
        return 1, err.getvalue() + result + "\n"
    return (result if isinstance(result, int) else 0), err.getvalue()


@contextlib.contextmanager
def surroundings(tool: Tool, tmp: Path):
    """No AWS within reach (a closed port, one attempt), and no terraform where the tool
    checks for it, for as long as one example runs."""
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
        "AWS_MAX_ATTEMPTS": "1",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    if tool.without_terraform:
        env["PATH"] = str(tmp / "empty-bin")
    with mock.patch.dict(os.environ, env):
        yield


@pytest.fixture(scope="module")
def tmp(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fuzzed")
    (path / "empty-bin").mkdir()
    (path / "lambda.zip").write_bytes(b"")
    return path


TOOL_NAMES = [t.name for t in tools(Path("/nonexistent"))]


@pytest.mark.parametrize("tool_name", TOOL_NAMES)
@settings(
    max_examples=EXAMPLES_PER_TOOL,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(data=st.data())
def test_hostile_arguments_are_refused_in_one_line_and_valid_ones_taken(tool_name, tmp, data):
    tool = next(t for t in tools(tmp) if t.name == tool_name)
    drawn = draw_argv(data, tool, tmp)
    event("refused" if drawn.culprits else "valid")  # --hypothesis-show-statistics

    with surroundings(tool, tmp):
        code, err = run(tool.call, drawn.argv)

    if not drawn.culprits and tool.valid is None:
        assert (code, err) == (0, ""), drawn.argv  # got past the parser
        return
    lines = err.strip().splitlines()
    assert "Traceback" not in err, err
    assert lines, f"{drawn.argv}: exit {code} with nothing on stderr"
    if tool.one_line:
        assert len(lines) == 1, err
    if drawn.culprits:
        assert code != 0, f"{drawn.argv} accepted"
        assert any(culprit in lines[-1] for culprit in drawn.culprits), (drawn.argv, err)
    else:
        assert (code, tool.valid.says in lines[-1]) == (tool.valid.code, True), (drawn.argv, err)


# --- what only a real process shows ------------------------------------------------------------


def path_without_terraform() -> str:
    """PATH with every directory that holds a `terraform` left out."""
    kept = [
        d
        for d in os.environ.get("PATH", "").split(os.pathsep)
        if d and not os.access(os.path.join(d, "terraform"), os.X_OK)
    ]
    return os.pathsep.join(kept)


def tool_lines(stderr: str) -> list[str]:
    """stderr's lines without make's own (`make: *** [...] Error 2`)."""
    return [line for line in stderr.strip().splitlines() if not line.startswith("make")]


def run_process(command: list[str], env: dict[str, str], timeout_s: float = 60):
    return subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout_s
    )


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
@pytest.mark.parametrize("target", ["infra-up", "infra-down"])
def test_make_infra_without_terraform_says_so_in_one_line(target, tmp_path):
    env = {
        **os.environ,
        "PATH": path_without_terraform(),
        # Were terraform's check to come late, nothing here could start an emulator.
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
    }
    # -o: the venv and the Lambda zip are taken as they are (no pip, no rebuild).
    command = [shutil.which("make"), "--no-print-directory", "-o", ".venv/.installed"]
    done = run_process([*command, "-o", "build/lambda.zip", target], env)

    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    [line] = tool_lines(done.stderr)
    # make runs `streamline infra`, which names itself
    assert line.startswith("streamline infra: terraform not found on PATH: install Terraform"), line


@pytest.mark.parametrize("command", ["up", "plan", "down"])
def test_the_infra_script_without_terraform_exits_2_before_building_or_starting(command, tmp_path):
    env = {**os.environ, "PATH": path_without_terraform()}
    env.pop("AWS_ENDPOINT_URL", None)  # would start the embedded emulator, were it to get there
    zip_path = tmp_path / "not-built.zip"

    done = run_process(
        [sys.executable, "-m", "streamline.infra.stack", command, "--lambda-zip", str(zip_path)],
        env,
    )

    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert line.startswith("stack.py: terraform not found on PATH: install Terraform"), line
    assert not zip_path.exists()


def test_the_demo_without_terraform_exits_2_before_anything_starts():
    env = {**os.environ, "PATH": path_without_terraform()}

    done = run_process([sys.executable, "scripts/demo.py", "--count", "10"], env)

    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert line.startswith("demo.py: terraform not found on PATH")
    assert done.stdout == ""  # not even "[demo] infra-up"


SCRIPTS = {
    "load": ["scripts/load.py", "--count", "4", "--keys", "2"],
    "verify": ["scripts/verify.py", "--no-wait"],
    "replay": ["scripts/replay.py", "--to-stream"],
}


@pytest.fixture
def manifest(tmp_path) -> Path:
    """A sealed manifest of one event, so verify gets as far as the stack's names."""
    path = tmp_path / "manifest.json"
    event = load.Event(0, load.Source.KINESIS, "k-r1-0001", 1, "p")
    meta = {"runId": "r1", "createdAt": "2026-01-01T00:00:00+00:00", "seed": 1}
    write_manifest(
        path, load.manifest_for([event], {}, {**meta, "aggregated": False, "stack": {}}, True)
    )
    return path


def script_env(**extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_MAX_ATTEMPTS": "1",
        **extra,
    }


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize(
    ("content", "says"),
    [
        pytest.param('{"poison_queue_url": ', "is not JSON", id="not-json"),
        pytest.param('["sink_table_name"]', "holds a JSON list, not an object", id="a-list"),
        pytest.param(
            '{"kinesis_stream_name": 7, "sink_table_name": 7, "poison_queue_url": 7}',
            "is a int, not a string",
            id="wrong-type",
        ),
        pytest.param("{}", "--stack", id="no-names"),
    ],
)
def test_a_corrupt_stack_file_is_one_line_and_exit_2(script, content, says, tmp_path, manifest):
    stack = tmp_path / "stack.json"
    stack.write_text(content)
    # Nothing listens there: a tool that read past the stack file would fail differently.
    env = script_env(AWS_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}")

    done = run_process(
        [sys.executable, *SCRIPTS[script], "--stack", str(stack), "--manifest", str(manifest)]
        if script == "verify"
        else [sys.executable, *SCRIPTS[script], "--stack", str(stack)],
        env,
    )

    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    [line] = done.stderr.splitlines()
    assert says in line, line


@pytest.mark.parametrize("script", SCRIPTS)
def test_an_unreachable_endpoint_is_one_line_and_exit_2(script, tmp_path, manifest):
    endpoint = f"http://127.0.0.1:{free_port()}"
    stack = tmp_path / "stack.json"
    stack.write_text(
        json.dumps(
            {
                "kinesis_stream_name": "s",
                "source_table_name": "t",
                "sink_table_name": "sink",
                "poison_queue_url": f"{endpoint}/000000000000/poison",
                "on_failure_queue_url": f"{endpoint}/000000000000/on-failure",
            }
        )
    )
    argv = [*SCRIPTS[script], "--stack", str(stack)]
    if script == "verify":
        argv += ["--manifest", str(manifest)]
    if script == "load":
        argv += ["--manifest", str(tmp_path / "written.json")]

    done = run_process([sys.executable, *argv], script_env(AWS_ENDPOINT_URL=endpoint))

    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    [line] = done.stderr.splitlines()
    assert "Could not connect to the endpoint URL" in line, line
    assert not (tmp_path / "written.json").exists()


@pytest.mark.skipif(shutil.which("terraform") is None, reason="needs terraform")
def test_infra_up_against_an_unreachable_endpoint_stops_before_terraform(tmp_path):
    endpoint = f"http://127.0.0.1:{free_port()}"
    zip_path = tmp_path / "lambda.zip"
    zip_path.write_bytes(b"")  # there: nothing is built
    work_dir = tmp_path / "work"

    done = run_process(
        [
            sys.executable,
            "-m",
            "streamline.infra.stack",
            "up",
            "--lambda-zip",
            str(zip_path),
            "--work-dir",
            str(work_dir),
        ],
        {**os.environ, "AWS_ENDPOINT_URL": endpoint},
    )

    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert line.startswith(f"stack.py: AWS_ENDPOINT_URL {endpoint} does not answer"), line
    assert not work_dir.exists()  # terraform never ran


# --- the infra helpers run by Terraform ---------------------------------------------------------


@pytest.mark.parametrize(
    "env",
    [
        pytest.param({}, id="nothing-set"),
        pytest.param({"STREAMLINE_RESOURCE_ID": "id"}, id="no-settings"),
        pytest.param(
            {"STREAMLINE_RESOURCE_ID": "id", "STREAMLINE_SETTINGS": "{not json"}, id="bad-json"
        ),
        pytest.param({"STREAMLINE_RESOURCE_ID": "id", "STREAMLINE_SETTINGS": "[]"}, id="a-list"),
    ],
)
def test_post_apply_without_its_environment_is_one_line(env, monkeypatch):
    from streamline.infra import post_apply

    for name in ("STREAMLINE_RESOURCE_ID", "STREAMLINE_SETTINGS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    code, err = run(post_apply.main, ["aws_sqs_queue"])

    assert code == 2
    [line] = err.splitlines()
    assert "set STREAMLINE_RESOURCE_ID and STREAMLINE_SETTINGS" in line
