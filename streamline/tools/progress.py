"""A progress line on stderr: redrawn in place on a terminal, a plain line every few seconds
otherwise (CI logs, `make demo` output), so the scripts need no extra dependency."""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

BAR_WIDTH = 30
TTY_INTERVAL_S = 0.1
LOG_INTERVAL_S = 5.0


class Progress:
    """Thread-safe counter towards `total` with a rate, drawn on `stream`."""

    def __init__(self, label: str, total: int, unit: str = "events", stream: TextIO | None = None):
        self.label = label
        self.total = total
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._interval_s = TTY_INTERVAL_S if self._tty else LOG_INTERVAL_S
        self._started = time.monotonic()
        self._last_drawn = 0.0
        self._lock = threading.Lock()

    def advance(self, count: int = 1, note: str = "") -> None:
        with self._lock:
            self.done += count
            now = time.monotonic()
            if now - self._last_drawn >= self._interval_s:
                self._last_drawn = now
                self._draw(note)

    def update(self, done: int, total: int | None = None, note: str = "") -> None:
        """Set the absolute position (for watchers that poll a state, like verify)."""
        with self._lock:
            self.done = done
            if total is not None:
                self.total = total
            now = time.monotonic()
            if now - self._last_drawn >= self._interval_s:
                self._last_drawn = now
                self._draw(note)

    def finish(self, note: str = "") -> None:
        with self._lock:
            self._draw(note)
            if self._tty:
                self.stream.write("\n")
            self.stream.flush()

    def _draw(self, note: str) -> None:
        elapsed_s = max(time.monotonic() - self._started, 1e-9)
        fraction = min(self.done / self.total, 1.0) if self.total else 1.0
        filled = int(fraction * BAR_WIDTH)
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        line = (
            f"{self.label} [{bar}] {self.done}/{self.total} {self.unit} "
            f"{self.done / elapsed_s:.0f}/s {elapsed_s:.1f}s"
        )
        if note:
            line += f" {note}"
        if self._tty:
            self.stream.write("\r\033[K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
