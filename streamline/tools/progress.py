"""Progress for the scripts (load, verify, the demo), drawn by rich: a live bar on a terminal,
a plain line every few seconds otherwise (CI, a pipe, `| tee`, a log file).

The plain line is read back by other tools, so its format is defined here once, with its
reader (`Snapshot.line`, `parse_line`): the demo reads load's and verify's to draw its own
bars, the chaos run reads `N/M events` from load's log.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from dataclasses import dataclass
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, ProgressColumn, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress
from rich.text import Text

# How often a plain line is written; a program that reads them (the demo) asks for more.
PLAIN_INTERVAL_ENV = "STREAMLINE_PROGRESS_INTERVAL_S"
DEFAULT_PLAIN_INTERVAL_S = 5.0


def is_live_terminal(stream: TextIO) -> bool:
    """Whether `stream` is a terminal to redraw in place. rich alone also says yes to a pipe
    when FORCE_COLOR is set; the programs reading our plain lines need them even then."""
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty()) and Console(file=stream).is_interactive
    except ValueError:  # closed
        return False


def plain_interval_s() -> float:
    try:
        return max(0.0, float(os.environ.get(PLAIN_INTERVAL_ENV, DEFAULT_PLAIN_INTERVAL_S)))
    except ValueError:
        return DEFAULT_PLAIN_INTERVAL_S


@dataclass(frozen=True)
class Snapshot:
    """One plain progress line: `load: 1200/3000 events, 400 events/s, 3.0 s[, note]`."""

    label: str
    done: int
    total: int
    unit: str
    rate: float  # per second, since the start
    elapsed_s: float
    note: str = ""

    def line(self) -> str:
        text = (
            f"{self.label}: {self.done}/{self.total} {self.unit}, "
            f"{self.rate:.0f} {self.unit}/s, {self.elapsed_s:.1f} s"
        )
        return f"{text}, {self.note}" if self.note else text


_PLAIN_LINE = re.compile(
    r"^(?P<label>[\w-]+): (?P<done>\d+)/(?P<total>\d+) (?P<unit>\w+), "
    r"(?P<rate>\d+(?:\.\d+)?) (?P=unit)/s, (?P<elapsed>\d+(?:\.\d+)?) s(?:, (?P<note>.+))?$"
)


def parse_line(line: str) -> Snapshot | None:
    """The Snapshot a plain progress line shows; None for any other line."""
    match = _PLAIN_LINE.match(line.rstrip("\n"))
    if match is None:
        return None
    return Snapshot(
        label=match["label"],
        done=int(match["done"]),
        total=int(match["total"]),
        unit=match["unit"],
        rate=float(match["rate"]),
        elapsed_s=float(match["elapsed"]),
        note=match["note"] or "",
    )


class CountColumn(ProgressColumn):
    """`1200/3000 events`; nothing while the total is unknown."""

    def render(self, task) -> Text:
        if task.total is None:
            return Text("")
        return Text(f"{task.completed:.0f}/{task.total:.0f} {task.fields.get('unit', '')}")


class RateColumn(ProgressColumn):
    """`400 events/s`: over the last seconds, else since the start; nothing before any."""

    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        if speed is None and task.elapsed:
            speed = task.completed / task.elapsed
        if task.total is None or not speed:
            return Text("")
        return Text(f"{speed:,.0f} {task.fields.get('unit', '')}/s")


def bar_columns() -> tuple[ProgressColumn, ...]:
    """The columns of every bar we draw; a task sets `unit` and `note` as fields."""
    return (
        SpinnerColumn(finished_text="✓"),
        TextColumn("{task.description}"),
        BarColumn(bar_width=30),
        CountColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[note]}"),
    )


class Progress:
    """Thread-safe counter towards `total` with a rate: a rich bar on a terminal, a plain line
    (`Snapshot.line`) every `plain_interval_s()` otherwise, on `stream` (stderr)."""

    def __init__(self, label: str, total: int, unit: str = "events", stream: TextIO | None = None):
        self.label = label
        self.total = total
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0
        self.note = ""
        self._started = time.monotonic()
        self._last_drawn = 0.0
        self._interval_s = plain_interval_s()
        self._lock = threading.Lock()
        self._bar: RichProgress | None = None
        if is_live_terminal(self.stream):
            self._bar = RichProgress(*bar_columns(), console=Console(file=self.stream))
            self._task = self._bar.add_task(label, total=total, unit=unit, note="")
            self._bar.start()

    def advance(self, count: int = 1, note: str = "") -> None:
        with self._lock:
            self._show(self.done + count, None, note)

    def update(self, done: int, total: int | None = None, note: str = "") -> None:
        """Set the absolute position (for watchers that poll a state, like verify)."""
        with self._lock:
            self._show(done, total, note)

    def finish(self, note: str = "") -> None:
        """The last position drawn, whatever the interval; the note kept if none is given."""
        with self._lock:
            self.note = note or self.note
            if self._bar is not None:
                self._bar.update(self._task, completed=self.done, note=self.note, refresh=True)
                self._bar.stop()
            else:
                self._write_line()

    def snapshot(self) -> Snapshot:
        elapsed_s = max(time.monotonic() - self._started, 1e-9)
        rate = self.done / elapsed_s
        return Snapshot(self.label, self.done, self.total, self.unit, rate, elapsed_s, self.note)

    def _show(self, done: int, total: int | None, note: str) -> None:
        self.done = done
        self.total = self.total if total is None else total
        self.note = note or self.note
        if self._bar is not None:
            self._bar.update(self._task, completed=done, total=self.total, note=self.note)
            return
        now = time.monotonic()
        if now - self._last_drawn >= self._interval_s:
            self._last_drawn = now
            self._write_line()

    def _write_line(self) -> None:
        self.stream.write(self.snapshot().line() + "\n")
        self.stream.flush()
