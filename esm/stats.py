"""Per-shard counters, the periodic progress line (records/s, IteratorAge) and the summary."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from esm.onfailure import Condition
from esm.sources import StreamRecord


@dataclass
class ShardStats:
    stream: str
    shard_id: str
    records_processed: int = 0
    records_filtered: int = 0  # matched no filter of the mapping's FilterCriteria: dropped
    invocations: int = 0
    function_errors: int = 0
    partial_failures: int = 0
    retries: int = 0
    bisections: int = 0
    records_retry_exhausted: int = 0
    records_age_exceeded: int = 0
    throttles: int = 0
    iterator_age_ms: int = 0
    finished: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _rate_mark: tuple[float, int] = field(default=(0.0, 0), repr=False)

    def invoked(self, failed: bool) -> None:
        with self._lock:
            self.invocations += 1
            self.function_errors += failed

    def processed(self, records: Sequence[StreamRecord], now_s: float) -> None:
        if not records:
            return
        with self._lock:
            self.records_processed += len(records)
            # Lambda's IteratorAge: the age of the batch's last record when it is processed.
            self.iterator_age_ms = max(0, int((now_s - records[-1].arrival_s) * 1000))

    def filtered(self, count: int) -> None:
        with self._lock:
            self.records_filtered += count

    def caught_up(self) -> None:
        with self._lock:
            self.iterator_age_ms = 0

    def partial_failure(self) -> None:
        with self._lock:
            self.partial_failures += 1

    def retried(self) -> None:
        with self._lock:
            self.retries += 1

    def bisected(self) -> None:
        with self._lock:
            self.bisections += 1

    def throttled(self) -> None:
        with self._lock:
            self.throttles += 1

    def gave_up(self, count: int, condition: Condition) -> None:
        with self._lock:
            if condition is Condition.RECORD_AGE_EXCEEDED:
                self.records_age_exceeded += count
            else:
                self.records_retry_exhausted += count

    def rate(self, now_s: float) -> float:
        """Records per second since the previous call."""
        with self._lock:
            mark_s, mark_count = self._rate_mark
            self._rate_mark = (now_s, self.records_processed)
            if not mark_s or now_s <= mark_s:
                return 0.0
            return (self.records_processed - mark_count) / (now_s - mark_s)

    def progress_line(self, now_s: float) -> str:
        rate = self.rate(now_s)
        state = "finished" if self.finished else f"IteratorAge {self.iterator_age_ms} ms"
        return (
            f"[esm] {self.stream} {self.shard_id}: {self.records_processed} records "
            f"({rate:.0f}/s), {state}, {self.invocations} invocations, "
            f"{self.function_errors} errors, {self.retries} retries"
        )

    def summary(self) -> dict:
        return {
            "stream": self.stream,
            "shardId": self.shard_id,
            "records": self.records_processed,
            "filtered": self.records_filtered,
            "invocations": self.invocations,
            "functionErrors": self.function_errors,
            "partialFailures": self.partial_failures,
            "retries": self.retries,
            "bisections": self.bisections,
            "retryAttemptsExhausted": self.records_retry_exhausted,
            "recordAgeExceeded": self.records_age_exceeded,
            "throttles": self.throttles,
            "iteratorAgeMs": self.iterator_age_ms,
            "finished": self.finished,
        }
