"""SIGINT and SIGTERM as an exception, so a tool's finally blocks run on either.

SIGTERM's default action ends the process without running a single finally block: a verify
or load stopped that way would leave poison messages hidden or a manifest marked complete.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived; finally blocks release what this run holds."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def interrupts_raised() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise Interrupted in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, _frame: Any) -> None:
        raise Interrupted(signum)

    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def interruption(exc: Interrupted | KeyboardInterrupt) -> tuple[str, int]:
    """The signal's name and the exit status a tool ends with, for an Interrupted or a
    KeyboardInterrupt (SIGINT): 128 + the signal's number, as a shell reports it."""
    signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
    return signal.Signals(signum).name, 128 + signum
