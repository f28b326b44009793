"""The `streamline` command (streamline/cli.py): one entry point whose subcommands are the
tools, each shown under streamline's name, the old spellings still working beside it.

Help and the top level run the installed console script (`.venv/bin/streamline`, beside the
interpreter running the tests) as a user would; the bad-input matrix calls `cli.main(argv)`
in-process, where each case ends before anything is started, sent or built.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from streamline import cli
from streamline.paths import REPO_ROOT

STREAMLINE = Path(sys.executable).with_name("streamline")
PY = sys.executable

pytestmark = pytest.mark.skipif(
    not STREAMLINE.exists(), reason=f"{STREAMLINE} not installed: pip install -e ."
)

# Each level of every command, with its old spelling.
LEVELS = {
    "demo": [PY, "scripts/demo.py"],
    "esm": [PY, "-m", "esm"],
    "esm run": [PY, "-m", "esm", "run"],
    "esm event": [PY, "-m", "esm", "event"],
    "esm event kinesis": [PY, "-m", "esm", "event", "kinesis"],
    "esm invoke": [PY, "-m", "esm", "invoke"],
    "load": [PY, "scripts/load.py"],
    "verify": [PY, "scripts/verify.py"],
    "replay": [PY, "scripts/replay.py"],
    "infra": [PY, "-m", "streamline.infra.stack"],
    "infra up": [PY, "-m", "streamline.infra.stack", "up"],
    "infra plan": [PY, "-m", "streamline.infra.stack", "plan"],
    "infra down": [PY, "-m", "streamline.infra.stack", "down"],
    "bench": [PY, "scripts/bench.py"],
    "chaos": [PY, "-m", "streamline.chaos"],
    "emulator": [PY, "scripts/emulator.py"],
    "emulator start": [PY, "scripts/emulator.py", "start"],
}


def run(command: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.fixture(scope="module")
def helps() -> dict[tuple[str, str], subprocess.CompletedProcess]:
    """Every level's --help, by (level, "new" | "old"): run side by side, as a process each
    costs its imports (boto3's, moto's) and nothing else."""
    commands = {}
    for level, old in LEVELS.items():
        commands[level, "new"] = [str(STREAMLINE), *level.split(), "--help"]
        commands[level, "old"] = [*old, "--help"]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 4) as pool:
        done = dict(zip(commands, pool.map(run, commands.values()), strict=True))
    return done


def flags(help_text: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", help_text))


# --- every command's help ----------------------------------------------------------------------


@pytest.mark.parametrize("level", LEVELS)
def test_each_level_shows_its_own_help_under_streamlines_name(level, helps):
    done = helps[level, "new"]

    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.startswith(f"usage: streamline {level} "), done.stdout[:200]


@pytest.mark.parametrize("level", LEVELS)
def test_the_old_spelling_shows_the_same_options(level, helps):
    old, new = helps[level, "old"], helps[level, "new"]

    assert (old.returncode, old.stderr) == (0, "")
    assert old.stdout.startswith("usage: ")
    assert "streamline " + level not in old.stdout.splitlines()[0]
    assert flags(old.stdout) <= flags(new.stdout)


@pytest.mark.parametrize("name", cli.COMMANDS)
def test_a_commands_help_ends_with_its_examples(name, helps):
    text = helps[name, "new"].stdout

    examples = text[text.rindex("\nexamples:\n") :]
    assert all(f"  {example}\n" in examples for example in cli.COMMANDS[name].examples)


@pytest.mark.parametrize("level", ["esm run", "infra up", "infra down", "esm invoke"])
def test_a_subcommands_help_ends_with_the_examples_for_it(level, helps):
    text = helps[level, "new"].stdout

    assert f"\nexamples:\n  streamline {level}" in text


def test_a_tools_own_words_are_kept(helps):
    # Only its program name changes: bench's epilog still names its old spelling.
    assert "example: python scripts/bench.py esm" in helps["bench", "new"].stdout


# --- the top level ------------------------------------------------------------------------------


def test_the_overview_lists_every_command_an_example_each_and_the_exit_status():
    done = run([str(STREAMLINE), "--help"])

    assert (done.returncode, done.stderr) == (0, "")
    for name, command in cli.COMMANDS.items():
        assert re.search(rf"^  {name} +{re.escape(command.summary)}$", done.stdout, re.M), name
        assert f"  {command.examples[0]}\n" in done.stdout
    assert "\nexit status:\n" in done.stdout


def test_no_command_prints_the_overview_on_stderr_and_exits_2():
    done = run([str(STREAMLINE)])

    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.startswith("usage: streamline ")
    assert "\ncommands:\n" in done.stderr


def test_python_dash_m_streamline_is_the_same_command():
    new = run([str(STREAMLINE), "--help"])
    old = run([PY, "-m", "streamline", "--help"])

    assert (old.returncode, old.stdout) == (new.returncode, new.stdout)


def test_the_version_is_the_installed_packages():
    done = run([str(STREAMLINE), "--version"])

    assert (done.returncode, done.stdout) == (0, "streamline 0.1.0\n")


def test_the_overview_imports_neither_boto3_nor_moto():
    # In a fresh interpreter: the test process has imported them already.
    probe = (
        "import contextlib, io, sys\n"
        "from streamline import cli\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    cli.main(['--help'])\n"
        "heavy = ('boto3', 'botocore', 'moto', 'matplotlib', 'esm.cli', 'streamline.tools.load')\n"
        "print(sorted(name for name in heavy if name in sys.modules))\n"
    )
    done = run([PY, "-c", probe])

    assert (done.returncode, done.stdout, done.stderr) == (0, "[]\n", "")


@pytest.mark.parametrize(
    "argv, says",
    [
        pytest.param(["bogus"], "streamline: argument COMMAND: invalid choice: 'bogus'", id="name"),
        pytest.param(["--bogus"], "streamline: unknown option --bogus", id="option"),
        pytest.param(["load", "--count", "ten"], "streamline load: argument --count", id="load"),
        pytest.param(["chaos", "--events", "10"], "streamline chaos: --events", id="chaos"),
        pytest.param(
            ["infra", "up", "--var", "x"], "streamline infra up: argument --var", id="var"
        ),
    ],
)
def test_bad_input_through_the_entry_point_is_one_line_and_exit_2(argv, says):
    done = run([str(STREAMLINE), *argv])

    assert (done.returncode, done.stdout) == (2, "")
    [line] = done.stderr.splitlines()
    assert line.startswith(says), line


# --- bad input, every command -------------------------------------------------------------------

# (argv, exit status, what the one line says); MISSING stands for a path that does not exist.
MISSING = "<missing>"
BAD_INPUT = [
    pytest.param(["nope"], 2, "invalid choice: 'nope'", id="unknown-command"),
    pytest.param(["-x"], 2, "unknown option -x", id="option-before-command"),
    pytest.param(["demo", "--count", "0"], 2, "--count: must be from 1", id="demo-count-zero"),
    pytest.param(["demo", "--poison-fraction", "2"], 2, "--poison-fraction", id="demo-fraction"),
    pytest.param(["demo", "extra"], 2, "unrecognized arguments: extra", id="demo-extra"),
    pytest.param(["esm"], 2, "the following arguments are required", id="esm-no-command"),
    pytest.param(["esm", "nope"], 2, "invalid choice: 'nope'", id="esm-unknown-command"),
    pytest.param(["esm", "run"], 2, "need --function-name", id="esm-run-nothing-to-run"),
    pytest.param(["esm", "run", "--batch-size", "x"], 2, "--batch-size", id="esm-run-batch-size"),
    pytest.param(["esm", "run", "--timeout", "0"], 2, "--timeout: must be", id="esm-run-timeout"),
    pytest.param(["esm", "event", "kinesis", "--records", "0"], 2, "--records", id="esm-records"),
    pytest.param(
        ["esm", "event", "dynamodb", "--data-file", MISSING],
        2,
        "cannot read --data-file",
        id="esm-event-missing-data-file",
    ),
    pytest.param(["esm", "event", "kinesis", "--data", "{"], 2, "not JSON", id="esm-event-json"),
    pytest.param(["esm", "invoke"], 2, "--handler, --event", id="esm-invoke-required"),
    pytest.param(
        ["esm", "invoke", "--handler", "nodot", "--event", "-"],
        2,
        "not MODULE.FUNCTION",
        id="esm-invoke-handler",
    ),
    pytest.param(
        ["esm", "invoke", "--handler", "processor.handler.handler", "--event", MISSING],
        2,
        "cannot read the event",
        id="esm-invoke-missing-event",
    ),
    pytest.param(["load", "--count", "ten"], 2, "'ten' is not an integer", id="load-count"),
    pytest.param(["load", "--rate", "nan"], 2, "--rate: must be a finite", id="load-rate-nan"),
    pytest.param(["load", "--source", "sqs"], 2, "invalid choice: 'sqs'", id="load-source"),
    pytest.param(["load", "--stack", MISSING], 2, "does not exist", id="load-missing-stack"),
    pytest.param(["verify", "--timeout", "-1"], 2, "--timeout: must be", id="verify-timeout"),
    pytest.param(["verify", "--stack", ""], 2, "--stack: must not be empty", id="verify-empty"),
    pytest.param(["verify", "--stack", MISSING], 2, "does not exist", id="verify-no-stack"),
    pytest.param(["replay"], 2, "--to-handler --to-stream is required", id="replay-no-target"),
    pytest.param(["replay", "--to-stream", "--limit", "0"], 2, "--limit", id="replay-limit"),
    pytest.param(
        ["replay", "--to-stream", "--stack", MISSING],
        2,
        "does not exist",
        id="replay-missing-stack",
    ),
    pytest.param(["infra"], 2, "the following arguments are required", id="infra-no-command"),
    pytest.param(["infra", "apply"], 2, "invalid choice: 'apply'", id="infra-unknown-command"),
    pytest.param(["infra", "up", "--provider", "x"], 2, "invalid choice: 'x'", id="infra-provider"),
    pytest.param(["infra", "plan", "--var", "x"], 2, "expected NAME=VALUE", id="infra-var"),
    pytest.param(["infra", "down", "--lambda-zip", ""], 2, "must not be empty", id="infra-zip"),
    pytest.param(["bench", "nope"], 2, "unknown benchmark(s): 'nope'", id="bench-unknown"),
    pytest.param(["bench", "--fast"], 2, "unrecognized arguments: --fast", id="bench-option"),
    pytest.param(["chaos", "--events", "10"], 2, "--events must be at least 100", id="chaos-few"),
    pytest.param(["chaos", "--seed", "x"], 2, "invalid int value: 'x'", id="chaos-seed"),
    pytest.param(["chaos", "--shards", "1"], 2, "--shards must be from 2", id="chaos-shards"),
    pytest.param(["emulator"], 2, "the following arguments are required", id="emulator-none"),
    pytest.param(["emulator", "start", "--port", "0"], 2, "--port: must be", id="emulator-port"),
    pytest.param(
        ["emulator", "env", "--state-file", MISSING],
        2,
        "no emulator recorded",
        id="emulator-env-missing-state",
    ),
]


def run_in_process(argv: list[str], capsys) -> tuple[int, list[str]]:
    try:
        status = cli.main(argv)
    except SystemExit as exc:
        status = exc.code
    captured = capsys.readouterr()
    return status, captured.err.splitlines()


@pytest.mark.parametrize("argv, status, says", BAD_INPUT)
def test_bad_input_says_what_is_wrong_in_one_line(argv, status, says, tmp_path, capsys):
    argv = [str(tmp_path / "missing.json") if arg is MISSING else arg for arg in argv]

    code, lines = run_in_process(argv, capsys)

    assert code == status, lines
    [line] = lines
    assert says in line, line


def test_argument_errors_name_the_command_as_streamline_shows_it(capsys):
    _, [line] = run_in_process(["esm", "event", "kinesis", "--keys", "0"], capsys)

    assert line.startswith("streamline esm event kinesis: argument --keys"), line


def test_the_tools_parsers_are_their_own_again_after_a_command(capsys):
    # Given a command has run under streamline's name
    parse_known_args = argparse.ArgumentParser.parse_known_args
    run_in_process(["chaos", "--events", "10"], capsys)

    # Then argparse is as it was, and a tool's own parser keeps its own name
    assert argparse.ArgumentParser.parse_known_args is parse_known_args
    from streamline.chaos import run as chaos

    with pytest.raises(SystemExit):
        chaos.parse_args(["--events", "10"])
    assert capsys.readouterr().err.startswith("python -m streamline.chaos: --events")


# --- infra: the Lambda zip ----------------------------------------------------------------------


def path_without_terraform() -> str:
    return os.pathsep.join(
        d
        for d in os.environ.get("PATH", "").split(os.pathsep)
        if d and not os.access(os.path.join(d, "terraform"), os.X_OK)
    )


def test_infra_without_terraform_says_so_before_building_the_zip(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", path_without_terraform())
    zip_path = tmp_path / "lambda.zip"

    code, [line] = run_in_process(["infra", "up", "--lambda-zip", str(zip_path)], capsys)

    assert code == 2
    assert line.startswith("streamline infra: terraform not found on PATH"), line
    assert not zip_path.exists()


def touch(path: Path, mtime_s: int) -> Path:
    path.write_text("")
    os.utime(path, (mtime_s, mtime_s))
    return path


def test_a_missing_zip_is_stale(tmp_path):
    assert cli.why_stale(tmp_path / "lambda.zip", []) == "missing"


def test_a_zip_older_than_a_source_is_stale(tmp_path):
    source = touch(tmp_path / "handler.py", 2_000)
    built = touch(tmp_path / "lambda.zip", 1_000)

    assert cli.why_stale(built, [source]) == f"older than {source}"


def test_a_zip_newer_than_every_source_is_current(tmp_path):
    source = touch(tmp_path / "handler.py", 1_000)
    built = touch(tmp_path / "lambda.zip", 1_000)

    assert cli.why_stale(built, [source]) is None


def test_the_zips_sources_are_make_infra_ups_prerequisites():
    sources = {path.relative_to(REPO_ROOT).as_posix() for path in cli.lambda_zip_sources()}

    assert {"pyproject.toml", "streamline/infra/lambda_zip.py", "processor/handler.py"} <= sources
    assert not any("__pycache__" in source or source.endswith(".pyc") for source in sources)


# --- an installation that lacks what a command needs ---------------------------------------------


@pytest.mark.parametrize("name", ["demo", "infra", "bench", "chaos"])
def test_a_command_that_needs_the_checkout_says_so_in_one_line_on_an_installed_copy(
    name, tmp_path, monkeypatch, capsys
):
    # Given an installed copy: the package without the repository around it
    monkeypatch.setattr(cli, "REPO_ROOT", tmp_path)

    status, err = run_in_process([name], capsys)

    assert status == 2
    [line] = err
    assert line.startswith(f"streamline {name}: needs a checkout of the repository"), line


def test_a_command_whose_dev_dependency_is_missing_says_which(monkeypatch, capsys):
    command = cli.Command("streamline.emulator:main", "", (), needs_modules=("no_such_module",))
    monkeypatch.setitem(cli.COMMANDS, "emulator", command)

    status, err = run_in_process(["emulator", "start"], capsys)

    assert status == 2
    assert err == [
        "streamline emulator: needs no_such_module, a dev dependency: run `make install` in a "
        "checkout"
    ]


def test_help_is_shown_even_where_the_command_cannot_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "REPO_ROOT", tmp_path)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["demo", "--help"])
    assert exit_.value.code == 0
    assert "usage: streamline demo" in capsys.readouterr().out


def test_this_checkout_has_what_every_command_needs():
    assert {name: c.missing() for name, c in cli.COMMANDS.items() if c.missing()} == {}
