"""`streamline`: one command for everything a user runs, each tool a subcommand.

    streamline demo | esm | load | verify | replay | infra | bench | chaos | emulator

The console entry point (`[project.scripts]`); `python -m streamline` is the same. Each
subcommand hands its arguments, `--help` included, to the tool's own `main(argv)`, which
parses them, so a tool's options, checks and exit codes are the same under both spellings
(`streamline load ...` and `python scripts/load.py ...`). A tool is imported only when its
command runs: `streamline --help` loads neither boto3 nor moto.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import importlib.util
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from streamline.arguments import OneLineParser
from streamline.paths import REPO_ROOT

PROG = "streamline"


@dataclass(frozen=True)
class Command:
    """One subcommand: the tool's `main(argv) -> int` ("module:function", imported when the
    command runs), what it does in one line, and examples for the --help of each level."""

    entry: str
    summary: str
    examples: tuple[str, ...]
    # What the command needs besides the package: a checkout of the repository (its Makefile,
    # Terraform, tools) and importable modules (the dev dependencies: `make install`).
    needs_checkout: bool = False
    needs_modules: tuple[str, ...] = ()

    def missing(self) -> str | None:
        """Why this command cannot run on this installation (one line), or None."""
        if self.needs_checkout and not (REPO_ROOT / "Makefile").is_file():
            return (
                f"needs a checkout of the repository ({REPO_ROOT} is an installed copy): "
                "clone it and run `make install`, or `make demo` there"
            )
        absent = [name for name in self.needs_modules if importlib.util.find_spec(name) is None]
        if absent:
            return f"needs {', '.join(absent)}, a dev dependency: run `make install` in a checkout"
        return None

    def run(self, argv: list[str]) -> int:
        module_name, _, function_name = self.entry.partition(":")
        return getattr(importlib.import_module(module_name), function_name)(argv)


COMMANDS: dict[str, Command] = {
    "demo": Command(
        "streamline.demo:main",
        "the whole pipeline on the embedded emulator: up, run, load, verify, down",
        ("streamline demo", "streamline demo --count 5000 --aggregate --keep"),
        needs_checkout=True,
        needs_modules=("moto",),
    ),
    "esm": Command(
        "esm.cli:main",
        "the local event source mapping runner: run, event, invoke",
        (
            "streamline esm run --function-name streamline-processor --until-idle 30",
            "streamline esm event kinesis --records 5 --poison-every 3 > event.json",
            "streamline esm invoke --handler processor.handler.handler --event event.json",
        ),
    ),
    "load": Command(
        "streamline.tools.load:main",
        "push demo events onto the stream and/or table, and write a manifest",
        (
            "streamline load --count 5000 --keys 50",
            "streamline load --source kinesis --poison-fraction 0.01 --aggregate",
        ),
    ),
    "verify": Command(
        "streamline.tools.verify:main",
        "check the sink against load's manifest: nothing lost, duplicated or reordered",
        ("streamline verify", "streamline verify --manifest build/manifest.json --no-wait"),
    ),
    "replay": Command(
        "streamline.tools.replay:main",
        "re-drive parked and given-up records to a handler or back onto their stream",
        (
            "streamline replay --to-stream --from poison --dry-run",
            "streamline replay --to-handler processor.handler.handler --key k-0001",
        ),
    ),
    "infra": Command(
        "streamline.cli:infra",
        "apply, plan or destroy the Terraform stack (builds the Lambda zip first if stale)",
        (
            "streamline infra up",
            "streamline infra plan --var batch_size=500",
            "streamline infra down",
        ),
        needs_checkout=True,
    ),
    "bench": Command(
        "streamline.bench:main",
        "the benchmarks, one JSON object per line",
        ("streamline bench", "streamline bench esm"),
        needs_checkout=True,
        needs_modules=("moto",),
    ),
    "chaos": Command(
        "streamline.chaos.run:main",
        "the pipeline under injected faults, every event checked",
        ("streamline chaos --quick", "streamline chaos --seed 42"),
        needs_checkout=True,
        needs_modules=("moto", "matplotlib"),
    ),
    "emulator": Command(
        "streamline.emulator:main",
        "start, stop or point a shell at the embedded emulator (moto's server)",
        (
            "streamline emulator start",
            'eval "$(streamline emulator env)"',
            "streamline emulator stop",
        ),
        needs_modules=("moto",),
    ),
}

# What the commands' exit statuses mean: the same across the tools where they overlap, and each
# tool's --help lists its own in full. Checked against each tool's main() (docs/cli.md).
EXIT_STATUS = """\
exit status:
  0    done: the check passed, the work was done (infra plan: no changes)
  1    the command ran and failed: verify or chaos found events lost, duplicated or out of
       order; load stopped part-way; replay's records failed again; esm invoke's function
       raised; esm run's runner failed; terraform failed
  2    bad usage or could not start: an unknown command, a bad argument, a missing file,
       tool or endpoint (infra plan: 2 also means the plan has changes)
  3-5  verify 3: not drained yet; replay 3: unconfirmed, 4: refused, 5: messages in flight
  130  interrupted by Ctrl-C (143: SIGTERM)
"""


def build_parser() -> argparse.ArgumentParser:
    width = max(map(len, COMMANDS))
    commands = "\n".join(f"  {name:<{width}}  {c.summary}" for name, c in COMMANDS.items())
    examples = "\n".join(f"  {example}" for c in COMMANDS.values() for example in c.examples[:1])
    parser = OneLineParser(
        prog=PROG,
        usage=f"{PROG} [-h] [--version] COMMAND [ARGS ...]",
        description="Ordered stream processing for AWS Lambda: the demo, the local event source\n"
        "mapping runner, the load, verify and replay tools, the Terraform stack, the benchmarks\n"
        "and the chaos run, as one command.",
        epilog=f"commands:\n{commands}\n\nexamples:\n{examples}\n"
        f"  {PROG} COMMAND --help    the command's own options, examples and exit status\n\n"
        f"{EXIT_STATUS}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {_version()}")
    parser.add_argument(
        "command", metavar="COMMAND", choices=list(COMMANDS), help="one of the commands below"
    )
    parser.add_argument(
        "args", nargs=argparse.REMAINDER, metavar="ARGS", help="the command's own arguments"
    )
    return parser


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("streamline")
    except metadata.PackageNotFoundError:
        return "(not installed)"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv:  # a usage error, like a missing argument: the overview, exit 2
        parser.print_help(sys.stderr)
        return 2
    if argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version"):
        parser.error(f"unknown option {argv[0]}: a COMMAND comes first")
    # Only the command name here: everything after it, --help included, is the tool's.
    name = parser.parse_args(argv[:1]).command
    command = COMMANDS[name]
    missing = command.missing()
    if missing and not {"-h", "--help"} & set(argv[1:]):
        print(f"{PROG} {name}: {missing}", file=sys.stderr)
        return 2
    with shown_as(f"{PROG} {name}", command.examples):
        return command.run(argv[1:])


# --- the tools' parsers, shown as streamline's ------------------------------------------------


@contextlib.contextmanager
def shown_as(prog: str, examples: Sequence[str] = ()) -> Iterator[None]:
    """Within: the tool's own parser (the first to parse, as every tool's main() parses its
    argv first) is shown as `prog`, its subcommands under it, with errors in one line and
    `examples` after the help of each level they start with (all of them at the top). The old
    spellings build their parsers without this and keep their names; a parser built again with
    the tool's name (infra parses twice) is shown the same way.

    The tools build their parsers inside main(); were main(argv, prog=...) to take the name,
    this would be a keyword argument."""
    original = argparse.ArgumentParser.parse_known_args
    tool_prog: str | None = None

    def parse_known_args(parser, args=None, namespace=None):
        nonlocal tool_prog
        if tool_prog is None:
            tool_prog = parser.prog
        if parser.prog == tool_prog:
            for level in _rename(parser, tool_prog, prog):
                shown = [e for e in examples if level is parser or _starts_with(e, level.prog)]
                if shown:
                    level.format_help = functools.partial(_with_examples, level.format_help, shown)
        return original(parser, args, namespace)

    argparse.ArgumentParser.parse_known_args = parse_known_args
    try:
        yield
    finally:
        argparse.ArgumentParser.parse_known_args = original


def _rename(
    parser: argparse.ArgumentParser, old: str, new: str
) -> Iterator[argparse.ArgumentParser]:
    """Renames `parser` and its subcommands' parsers, yielding each."""
    parser.prog = new + parser.prog.removeprefix(old)
    if parser.epilog:  # esm's epilog is its run command's help, usage line and all
        parser.epilog = parser.epilog.replace(f"usage: {old} ", f"usage: {new} ")
    if type(parser).error is argparse.ArgumentParser.error:  # chaos's plain ArgumentParser
        parser.error = functools.partial(OneLineParser.error, parser)
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            action._prog_prefix = new + action._prog_prefix.removeprefix(old)
            for sub in {id(p): p for p in action.choices.values()}.values():
                yield from _rename(sub, old, new)


def _starts_with(example: str, prog: str) -> bool:
    return example == prog or example.startswith(f"{prog} ")


def _with_examples(format_help, examples: Sequence[str]) -> str:
    return format_help().rstrip("\n") + "\n\nexamples:\n" + "".join(f"  {e}\n" for e in examples)


# --- streamline infra ---------------------------------------------------------------------------


def infra(argv: list[str]) -> int:
    """`python -m streamline.infra.stack`, with the Lambda zip built first when it is missing
    or older than what goes into it, as `make infra-up`'s build/lambda.zip rule does."""
    from streamline.infra import lambda_zip, offline, stack

    args = stack.build_parser().parse_args(argv)  # bad arguments, --help: here, nothing built
    try:
        offline.terraform_binary()
    except offline.MissingTool:
        return stack.main(argv)  # which says so in one line, before building or starting
    stale = why_stale(args.lambda_zip, lambda_zip_sources())
    if stale:
        print(f"{PROG} infra: building {args.lambda_zip} ({stale})", flush=True)
        try:
            lambda_zip.build(args.lambda_zip)
        except (lambda_zip.BuildFailed, OSError) as exc:
            # As stack.py says it when it builds a missing zip: could not run, exit 2.
            print(
                f"{PROG} infra: cannot build the Lambda zip {args.lambda_zip}: {exc}",
                file=sys.stderr,
            )
            return 2
    return stack.main(argv)


def lambda_zip_sources() -> Iterator[Path]:
    """What the Lambda zip is built from: mk/infra.mk's prerequisites of build/lambda.zip."""
    from streamline.infra import lambda_zip

    for package in lambda_zip.PACKAGE_DIRS:
        root = REPO_ROOT / package
        for path in root.rglob("*"):
            skipped = lambda_zip.SKIPPED_PARTS & set(path.relative_to(root).parts)
            if path.is_file() and not skipped and path.suffix not in lambda_zip.SKIPPED_SUFFIXES:
                yield path
    yield REPO_ROOT / "pyproject.toml"
    yield Path(lambda_zip.__file__)


def why_stale(target: Path, sources: Iterable[Path]) -> str | None:
    """Make's rule: why `target` must be built (missing, or older than a source), else None."""
    try:
        built_ns = target.stat().st_mtime_ns
    except FileNotFoundError:
        return "missing"
    for source in sources:
        if source.stat().st_mtime_ns > built_ns:
            shown = source.relative_to(REPO_ROOT) if source.is_relative_to(REPO_ROOT) else source
            return f"older than {shown}"
    return None
