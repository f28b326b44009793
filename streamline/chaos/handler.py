"""The demo handler with faults injected inside the function (the chaos run's handler).

It is `processor.handler.handler`, built the same way from the same environment, with:

- transient record failures: a record's fold raises `TransientChaosError` at
  CHAOS_RECORD_FAILURE_RATE per attempt (the next attempt draws again; MAX_ATTEMPTS is set
  high enough that none is parked for it);
- crashes after part of the batch took effect: after a key's commit has landed, the process
  exits at CHAOS_CRASH_RATE per commit (os._exit: no cleanup, the other keys' commits cut off
  wherever they are), as a killed or out-of-memory Lambda environment does;
- timeouts after part of the batch took effect: after a commit, the handler sleeps past the
  function's timeout at CHAOS_TIMEOUT_RATE per invocation, and the runner kills the worker.

Each of the crash and the timeout also happens at least once per run, whatever the rates:
the run leaves a token for each in CHAOS_ONCE_DIR, and the first process to take it does it.

Every injected fault is appended to CHAOS_FAULT_LOG (JSON lines: `t`, `kind`) before it
happens. Draws are seeded with CHAOS_SEED and the worker's pid.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from typing import Any

from processor.handler import build_processor, logger, metrics, tracer
from processor.records import Record

RECORD_FAILURE = "record failure"
HANDLER_CRASH = "handler crash"
HANDLER_TIMEOUT = "handler timeout"
CRASH_EXIT_STATUS = 137  # what a SIGKILLed process reports


class TransientChaosError(Exception):
    """An injected failure that the next attempt of the record does not repeat."""


def _rate(name: str) -> float:
    return float(os.environ.get(name, "0") or 0)


class Chaos:
    def __init__(self) -> None:
        self.record_failure_rate = _rate("CHAOS_RECORD_FAILURE_RATE")
        self.crash_rate = _rate("CHAOS_CRASH_RATE")
        self.timeout_rate = _rate("CHAOS_TIMEOUT_RATE")
        self.log_path = os.environ.get("CHAOS_FAULT_LOG")
        self.commit_log_path = os.environ.get("CHAOS_COMMIT_LOG")
        self.once_dir = os.environ.get("CHAOS_ONCE_DIR")
        self.timeout_s = float(os.environ.get("CHAOS_SLEEP_S", "900"))
        self._rng = random.Random(f"{os.environ.get('CHAOS_SEED', '0')}:{os.getpid()}")
        self._lock = threading.Lock()
        self.time_out_this_invocation = False

    def roll(self, rate: float) -> bool:
        if not rate:
            return False
        with self._lock:
            return self._rng.random() < rate

    def once(self, kind: str) -> bool:
        """Whether this process takes the run's one sure fault of `kind`: the run leaves a
        token file per kind in CHAOS_ONCE_DIR, and the first process to remove it wins."""
        if not self.once_dir:
            return False
        try:
            os.unlink(os.path.join(self.once_dir, kind.replace(" ", "-")))
        except FileNotFoundError:
            return False
        return True

    def note(self, kind: str) -> None:
        if not self.log_path:
            return
        _append(
            self.log_path, json.dumps({"t": time.time(), "kind": kind, "pid": os.getpid()}) + "\n"
        )

    def commit_noted(self, update: Any, state: Any, outcome: str) -> None:
        """Each key commit and how it ended, for a failed run's post-mortem (no payloads)."""
        if not self.commit_log_path:
            return
        entry = {
            "t": time.time(),
            "pid": os.getpid(),
            "key": state.key.partition_key,
            "shard": update.key.shard_id,
            "expected_version": state.expected_version,
            "position": update.position[0] if update.position else None,
            "count": json.loads(state.encoded).get("count") if state.encoded else None,
            "outcome": outcome,
        }
        _append(self.commit_log_path, json.dumps(entry) + "\n")

    def fold(self, fold):
        def chaotic_fold(record: Record, state: Any) -> Any:
            if self.roll(self.record_failure_rate):
                self.note(RECORD_FAILURE)
                raise TransientChaosError(f"injected failure of {record.sequence_number}")
            return fold(record, state)

        return chaotic_fold

    def after_commit(self) -> None:
        """A key's commit landed: part of the batch took effect."""
        if self.roll(self.crash_rate) or self.once(HANDLER_CRASH):
            self.note(HANDLER_CRASH)
            os._exit(CRASH_EXIT_STATUS)
        if self.time_out_this_invocation:
            self.time_out_this_invocation = False
            self.note(HANDLER_TIMEOUT)
            time.sleep(self.timeout_s)


def _append(path: str, line: str) -> None:
    # One write of a short line on an O_APPEND file: whole, whoever else appends.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


class _CommitWatcher:
    """The processor's checkpoint store, with `after_commit` called after each key commit."""

    def __init__(self, store: Any, chaos: Chaos) -> None:
        self._store = store
        self._chaos = chaos

    def commit_state(self, update: Any, state: Any, effects: Any = ()) -> None:
        try:
            self._store.commit_state(update, state, effects)
        except Exception as exc:
            self._chaos.commit_noted(update, state, type(exc).__name__)
            raise
        self._chaos.commit_noted(update, state, "committed")
        self._chaos.after_commit()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


_chaos: Chaos | None = None


def _processor():
    global _chaos
    processor = build_processor()
    if _chaos is None:
        _chaos = Chaos()
        processor.apply = _chaos.fold(processor.apply)
        processor.checkpoints = _CommitWatcher(processor.checkpoints, _chaos)
    return processor, _chaos


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict, context: Any) -> dict:
    processor, chaos = _processor()
    # Drawn per invocation, done at its next commit (an invocation that commits nothing
    # leaves it to the next one).
    chaos.time_out_this_invocation = (
        chaos.time_out_this_invocation
        or chaos.roll(chaos.timeout_rate)
        or chaos.once(HANDLER_TIMEOUT)
    )
    return processor.process(event, context)
