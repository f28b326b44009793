"""The scripts' progress (streamline/tools/progress.py): a rich bar on a terminal, plain lines
that other tools read back everywhere else. No server needed."""

from __future__ import annotations

import io

import pytest

from streamline.chaos.run import _LOAD_PROGRESS
from streamline.tools.progress import (
    PLAIN_INTERVAL_ENV,
    Progress,
    Snapshot,
    is_live_terminal,
    parse_line,
)


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def plain_env(monkeypatch):
    """No setting of the developer's shell decides what these tests see."""
    shell = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "NO_COLOR", PLAIN_INTERVAL_ENV)
    for name in shell:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")


def test_the_plain_line_reads_back_as_what_it_shows():
    shown = Snapshot("verify", 1200, 3000, "events", 400.0, 3.0, "20/60 keys settled")

    assert shown.line() == "verify: 1200/3000 events, 400 events/s, 3.0 s, 20/60 keys settled"
    assert parse_line(shown.line()) == shown


def test_the_chaos_run_still_reads_how_far_load_is_from_the_plain_line():
    line = Snapshot("load", 1200, 3000, "events", 400.0, 3.0).line()

    assert _LOAD_PROGRESS.findall(line) == [("1200", "3000")]


@pytest.mark.parametrize(
    "line",
    [
        pytest.param("sent 3000 events over 60 keys in 2.6s: ...; 16 poison", id="load-summary"),
        pytest.param("verified 3000 events over 60 keys: 2984 applied in order", id="verify"),
        pytest.param("load: 3/4 events", id="truncated"),
        pytest.param("", id="empty"),
    ],
)
def test_other_lines_are_not_progress(line):
    assert parse_line(line) is None


def test_not_on_a_terminal_it_writes_a_line_at_the_start_then_each_interval_and_at_the_end(
    plain_env, monkeypatch
):
    monkeypatch.setenv(PLAIN_INTERVAL_ENV, "3600")
    stream = io.StringIO()
    progress = Progress("load", 10, stream=stream)

    for _ in range(10):
        progress.advance()
    progress.finish()

    lines = [parse_line(line) for line in stream.getvalue().splitlines()]
    assert [(s.label, s.done, s.total) for s in lines] == [("load", 1, 10), ("load", 10, 10)]


def test_the_last_note_is_kept_when_finish_gives_none(plain_env, monkeypatch):
    monkeypatch.setenv(PLAIN_INTERVAL_ENV, "0")
    stream = io.StringIO()
    progress = Progress("verify", 4, stream=stream)

    progress.update(4, note="2/2 keys settled")
    progress.finish()

    assert parse_line(stream.getvalue().splitlines()[-1]).note == "2/2 keys settled"


def test_on_a_terminal_it_draws_a_rich_bar_with_the_count_and_rate(plain_env):
    terminal = Terminal()
    progress = Progress("load", 3000, stream=terminal)

    progress.advance(3000)
    progress.finish()

    drawn = terminal.getvalue()
    assert "3000/3000 events" in drawn and "events/s" in drawn
    assert "\x1b[" in drawn  # drawn in place, with escape codes
    assert not any(parse_line(line) for line in drawn.splitlines())


def test_a_pipe_gets_plain_lines_even_when_force_color_is_set(plain_env, monkeypatch):
    # rich alone would draw its bar into the pipe; the tools reading it need the lines.
    monkeypatch.setenv("FORCE_COLOR", "1")

    assert not is_live_terminal(io.StringIO())
    assert is_live_terminal(Terminal())
