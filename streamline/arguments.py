"""What the command-line tools share for their arguments: a parser whose errors are one line,
and argparse types that refuse what a tool cannot use (NaN, infinities, numbers out of range,
empty strings) with a message that names the bound.

A value refused here never reaches the tool: nothing is started, sent, written or deleted.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path

MAX_PORT = 65535


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (what is wrong, and where to look), not the
    usage block; exit status 2 as argparse's own. Its subcommands' parsers are of this class too
    (`add_subparsers` uses the parent's class)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


def _bounds(minimum: float | None, maximum: float | None, above: bool) -> str:
    def show(bound: float) -> str:
        return str(bound) if isinstance(bound, int) else f"{bound:g}"

    if minimum is not None and maximum is not None:
        return f"from {show(minimum)} to {show(maximum)}"
    if minimum is not None:
        return f"{'more than' if above else 'at least'} {show(minimum)}"
    return f"at most {show(maximum)}"


def integer(minimum: int | None = None, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number within [minimum, maximum] (either bound optional)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(
                f"must be {_bounds(minimum, maximum, above=False)}, got {text}"
            )
        return value

    return parse


def number(
    minimum: float | None = None, maximum: float | None = None, *, above: bool = False
) -> Callable[[str], float]:
    """An argparse type: a finite number within [minimum, maximum]; `above` makes the minimum
    exclusive (a poll interval of 0 would spin)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        too_small = minimum is not None and (value <= minimum if above else value < minimum)
        too_big = maximum is not None and value > maximum
        if not math.isfinite(value) or too_small or too_big:
            raise argparse.ArgumentTypeError(
                f"must be a finite number {_bounds(minimum, maximum, above)}, got {text}"
            )
        return value

    return parse


def text(value: str) -> str:
    """An argparse type: a name, URL or path that is not empty or blank. An empty one (an
    unset shell variable, say) must not fall back to a default the user did not mean."""
    if not value.strip():
        raise argparse.ArgumentTypeError("must not be empty" if not value else "must not be blank")
    return value


def non_empty(value: str) -> str:
    """An argparse type: any string but the empty one (a partition key may be blank)."""
    if not value:
        raise argparse.ArgumentTypeError("must not be empty")
    return value


def path(value: str) -> Path:
    """An argparse type: a file or directory path that is not empty (Path("") is the current
    directory, which no tool means)."""
    return Path(text(value))


def port(value: str) -> int:
    """An argparse type: a TCP port, 1 to 65535."""
    return integer(1, MAX_PORT)(value)
