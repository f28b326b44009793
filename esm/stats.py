"""Per-shard counters, the periodic status (records/s, IteratorAge) and the summary.

The counters include Lambda's ``EventCount`` metrics of a stream mapping, as AWS defines them
(``esm/metrics.py`` sends them to CloudWatch when the mapping's MetricsConfig asks for them):
https://docs.aws.amazon.com/lambda/latest/dg/monitoring-metrics-types.html#event-source-mapping-metrics

The status is a live table on a terminal and a plain line per shard otherwise; the plain line's
format is read by other tools (the chaos run's IteratorAge and "finished"), so it stays as is.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import TextIO

from rich.console import Console
from rich.live import Live
from rich.table import Table

from esm.onfailure import Condition
from esm.sources import StreamRecord

# A terminal's table is redrawn at least this often, whatever --progress-interval says.
LIVE_REFRESH_S = 1.0


@dataclass(frozen=True)
class EventCounts:
    """Lambda's EventCount metrics for Kinesis and DynamoDB Streams, in events (records)."""

    # Read successfully from the stream, before filtering.
    PolledEventCount: int = 0
    # Matched no filter of the mapping's FilterCriteria: dropped unseen.
    FilteredOutEventCount: int = 0
    # Sent to the function; a retried or bisected record counts again each time ("may count
    # multiple times for the same polled event due to automatic retries").
    InvokedEventCount: int = 0
    # Sent in an invocation that failed: a function error (timeout, crash), a response that
    # fails the whole batch, or a non-empty batchItemFailures ("includes any event with a
    # non-empty BatchItemFailures in the response": every record of that invocation).
    FailedInvokeEventCount: int = 0
    # Given up (MaximumRetryAttempts or MaximumRecordAgeInSeconds) and not sent to an
    # on-failure destination: none is configured.
    DroppedEventCount: int = 0
    # Given up and taken by the on-failure destination.
    OnFailureDestinationDeliveredEventCount: int = 0

    def __add__(self, other: EventCounts) -> EventCounts:
        return EventCounts(*(a + b for a, b in zip(self.values(), other.values(), strict=True)))

    def __sub__(self, other: EventCounts) -> EventCounts:
        return EventCounts(*(a - b for a, b in zip(self.values(), other.values(), strict=True)))

    def values(self) -> tuple[int, ...]:
        return tuple(getattr(self, f.name) for f in fields(self))

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def total(cls, stats: Iterable[ShardStats]) -> EventCounts:
        """One mapping's counts: the sum over its shards."""
        counts = cls()
        for shard in stats:
            counts += shard.event_counts()
        return counts

    def describe(self) -> str:
        return (
            f"events {self.PolledEventCount} polled, {self.FilteredOutEventCount} filtered out, "
            f"{self.InvokedEventCount} invoked, {self.FailedInvokeEventCount} failed invoke, "
            f"{self.DroppedEventCount} dropped, "
            f"{self.OnFailureDestinationDeliveredEventCount} to on-failure"
        )


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
    events_polled: int = 0
    events_invoked: int = 0  # each invocation's records, retries included
    events_failed_invoke: int = 0
    events_dropped: int = 0  # given up without an on-failure destination
    events_to_on_failure: int = 0  # given up and taken by the on-failure destination
    finished: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _rate_mark: tuple[float, int] = field(default=(0.0, 0), repr=False)

    def invoked(self, failed: bool, records: int = 0) -> None:
        """An invocation with ``records`` records; ``failed``: a function error."""
        with self._lock:
            self.invocations += 1
            self.function_errors += failed
            self.events_invoked += records

    def invocation_failed(self, records: int) -> None:
        """The invocation's records failed: function error, invalid response, or a partial
        failure (FailedInvokeEventCount)."""
        with self._lock:
            self.events_failed_invoke += records

    def polled(self, records: int) -> None:
        with self._lock:
            self.events_polled += records

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

    def gave_up(self, count: int, condition: Condition, *, to_destination: bool) -> None:
        """Records given up on: taken by the on-failure destination, or dropped (none)."""
        with self._lock:
            if condition is Condition.RECORD_AGE_EXCEEDED:
                self.records_age_exceeded += count
            else:
                self.records_retry_exhausted += count
            if to_destination:
                self.events_to_on_failure += count
            else:
                self.events_dropped += count

    def event_counts(self) -> EventCounts:
        with self._lock:
            return EventCounts(
                PolledEventCount=self.events_polled,
                FilteredOutEventCount=self.records_filtered,
                InvokedEventCount=self.events_invoked,
                FailedInvokeEventCount=self.events_failed_invoke,
                DroppedEventCount=self.events_dropped,
                OnFailureDestinationDeliveredEventCount=self.events_to_on_failure,
            )

    def rate(self, now_s: float) -> float:
        """Records per second since the previous call."""
        with self._lock:
            mark_s, mark_count = self._rate_mark
            self._rate_mark = (now_s, self.records_processed)
            if not mark_s or now_s <= mark_s:
                return 0.0
            return (self.records_processed - mark_count) / (now_s - mark_s)

    def status(self, now_s: float) -> ShardStatus:
        """What the status shows now; the rate is since the previous call."""
        rate = self.rate(now_s)
        counts = self.event_counts()
        with self._lock:
            return ShardStatus(
                stream=self.stream,
                shard_id=self.shard_id,
                records=self.records_processed,
                records_per_s=rate,
                iterator_age_ms=self.iterator_age_ms,
                invocations=self.invocations,
                errors=self.function_errors,
                retries=self.retries,
                finished=self.finished,
                counts=counts,
            )

    def progress_line(self, now_s: float) -> str:
        return self.status(now_s).line()

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
            "eventCounts": self.event_counts().as_dict(),
            "finished": self.finished,
        }


@dataclass(frozen=True)
class ShardStatus:
    """One shard's status at a moment: a row of the live table, or a plain line."""

    stream: str
    shard_id: str
    records: int
    records_per_s: float
    iterator_age_ms: int
    invocations: int
    errors: int  # function errors
    retries: int
    finished: bool
    counts: EventCounts

    def line(self) -> str:
        """The plain status line; streamline/chaos/run.py parses its IteratorAge and state."""
        state = "finished" if self.finished else f"IteratorAge {self.iterator_age_ms} ms"
        return (
            f"[esm] {self.stream} {self.shard_id}: {self.records} records "
            f"({self.records_per_s:.0f}/s), {state}, {self.invocations} invocations, "
            f"{self.errors} errors, {self.retries} retries; {self.counts.describe()}"
        )


def status_table(rows: Sequence[ShardStatus]) -> Table:
    """The runner's per-shard status as a table (a terminal's live view)."""
    table = Table(title="esm: per-shard status", title_justify="left")
    table.add_column("stream")
    table.add_column("shard")
    for name in ("records", "records/s", "IteratorAge ms", "invocations", "errors", "retries"):
        table.add_column(name, justify="right")
    for row in rows:
        age = "finished" if row.finished else f"{row.iterator_age_ms:,}"
        table.add_row(
            row.stream,
            row.shard_id,
            f"{row.records:,}",
            f"{row.records_per_s:,.0f}",
            age,
            f"{row.invocations:,}",
            f"{row.errors:,}",
            f"{row.retries:,}",
        )
    return table


class StatusBoard:
    """Shows the shards' status on `stream`: a live table redrawn in place on a terminal
    (rich), the plain lines every `interval_s` otherwise (logs, pipes, tests). `interval_s`
    0: nothing."""

    def __init__(
        self,
        stream: TextIO,
        interval_s: float,
        *,
        live: bool | None = None,
        console: Console | None = None,
    ):
        self.stream = stream
        self.console = console or Console(file=stream)
        self.live = self.console.is_interactive and _isatty(stream) if live is None else live
        self.interval_s = min(interval_s, LIVE_REFRESH_S) if self.live else interval_s
        self._next_s = time.monotonic() + self.interval_s
        self._live: Live | None = None

    def due(self, now_s: float) -> bool:
        """Whether to show the status at monotonic time `now_s` (and if so, from then on
        after another interval)."""
        if not self.interval_s or now_s < self._next_s:
            return False
        self._next_s = now_s + self.interval_s
        return True

    def show(self, rows: Sequence[ShardStatus]) -> None:
        if not self.live:
            for row in rows:
                print(row.line(), file=self.stream, flush=True)
            return
        if self._live is None:
            # The handler's logs share the terminal (the workers inherit it): redraw below them.
            self._live = Live(console=self.console, auto_refresh=False, redirect_stderr=False)
            self._live.start()
        self._live.update(status_table(rows), refresh=True)

    def close(self) -> None:
        """Leaves the last table on the screen; the summary lines follow it."""
        if self._live is not None:
            self._live.stop()
            self._live = None


def _isatty(stream: TextIO) -> bool:
    """rich counts a pipe as a terminal when FORCE_COLOR is set; the chaos run reads the
    plain lines from a pipe even then."""
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # closed
        return False
