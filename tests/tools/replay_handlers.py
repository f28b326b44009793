"""Handlers that replay.py imports in a subprocess (`--to-handler tests.tools.replay_handlers.NAME`,
with the repository on PYTHONPATH): this module imports nothing from the tests' folder."""

from __future__ import annotations

import os
import time
from pathlib import Path

STARTED_FILE = "REPLAY_TEST_STARTED_FILE"  # the variable naming the file slow_handler writes


def slow_handler(event: dict, context) -> dict:
    """Says it started, then takes far longer than a test waits."""
    Path(os.environ[STARTED_FILE]).write_text("started")
    time.sleep(60)
    return {}


def failing_handler(event: dict, context) -> dict:
    """Fails every batch, as a handler whose bug is not fixed yet does."""
    raise RuntimeError("still broken")
