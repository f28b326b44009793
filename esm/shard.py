"""One shard: a reader thread polling GetRecords and ParallelizationFactor lane threads.

Records of one partition key always go to the same lane, and each lane delivers its batches
one at a time, so per-key order holds while up to ParallelizationFactor batches of the shard
are in flight. The shard's checkpoint is the last record before which everything is settled.
https://docs.aws.amazon.com/lambda/latest/dg/with-kinesis.html#services-kinesis-parallelization
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from botocore.exceptions import BotoCoreError, ClientError

from esm.checkpoints import ShardCheckpoint, ShardCheckpointStore
from esm.delivery import BatchDelivery
from esm.filtering import matches
from esm.rules import MAX_PAYLOAD_BYTES, lane_of, take_batch
from esm.settings import MappingSettings
from esm.sources import PAYLOAD_OVERHEAD_BYTES, Shard, StreamRecord
from esm.stats import ShardStats
from esm.windows import WINDOW_OVERHEAD_BYTES, LaneWindow, count_in_window, state_too_large
from processor.aws import THROTTLING_ERRORS, Backoff, error_code, parse_arn

log = logging.getLogger("esm")


@dataclass(frozen=True)
class StartPoint:
    """Where a shard's first iterator points."""

    iterator_type: str  # TRIM_HORIZON, LATEST, AT_TIMESTAMP, AFTER_SEQUENCE_NUMBER
    sequence_number: str | None = None
    timestamp: datetime | None = None


@dataclass(frozen=True)
class Tuning:
    """The runner's own pacing; tests shrink these, never the rules."""

    poll_interval_s: float = 1.0  # between GetRecords calls on a caught-up shard
    retry_backoff_s: float = 0.5  # first wait before retrying a failed batch; doubles
    max_retry_backoff_s: float = 10.0
    throttle_backoff_s: float = 0.2  # first wait after a throttled read; doubles
    max_throttle_backoff_s: float = 5.0
    shard_refresh_s: float = 10.0  # how often to look for new shards
    progress_interval_s: float = 10.0  # how often to print progress (0: never)
    max_buffered_records: int = 20000  # read-ahead per shard, in records
    max_buffered_bytes: int = 64 * 1024 * 1024  # and in payload bytes
    read_limit: int = 2500  # records asked of one GetRecords call (at least the batch size)
    metrics_interval_s: float = 60.0  # between PutMetricData calls (MetricsConfig EventCount)


class ShardProcessor:
    def __init__(
        self,
        *,
        source,
        shard: Shard,
        start: StartPoint,
        mapping: MappingSettings,
        delivery_factory: Callable[[ShardStats], BatchDelivery],
        store: ShardCheckpointStore,
        tuning: Tuning,
        stop: threading.Event,
        on_finished: Callable[[str], None],
        last_checkpoint: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.source = source
        self.shard = shard
        self.shard_id = shard.shard_id
        self.mapping = mapping
        # The stream as the progress lines name it: what follows the resource type (a
        # Kinesis stream's name; a DynamoDB stream's table/NAME/stream/LABEL).
        stream = parse_arn(mapping.event_source_arn).resource.partition("/")[2]
        self.stats = ShardStats(stream, shard.shard_id)
        self._delivery = delivery_factory(self.stats)
        self._store = store
        self._tuning = tuning
        self._stop = stop
        self._on_finished = on_finished
        self._start = start
        self._clock = clock
        self._cond = threading.Condition()
        self._lanes = [deque() for _ in range(mapping.parallelization_factor)]
        self._unsettled: OrderedDict[str, bool] = OrderedDict()  # sequence number -> settled
        self._buffered_bytes = 0  # payload bytes read and not yet settled
        self._held = 0  # records delivered in open tumbling windows, not yet checkpointed
        self._read_issued_s = 0.0  # when the latest successful GetRecords call was made
        self._last_settled = last_checkpoint
        self._last_read: str | None = last_checkpoint
        self._ended = False  # the reader reached the end of a closed shard
        self._caught_up = False
        self.finished = False
        self.failed = False
        self._threads: list[threading.Thread] = []

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        name = f"esm-{self.shard_id}"
        self._threads = [threading.Thread(target=self._read_loop, name=f"{name}-reader")]
        for lane in range(len(self._lanes)):
            self._threads.append(
                threading.Thread(target=self._lane_loop, args=(lane,), name=f"{name}-lane{lane}")
            )
        for thread in self._threads:
            thread.daemon = True
            thread.start()

    def join(self, timeout_s: float | None = None) -> None:
        with self._cond:
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout_s)

    @property
    def idle(self) -> bool:
        """Caught up with the shard (or at its end) with nothing buffered or in flight."""
        with self._cond:
            return self.finished or (self._caught_up and not self._unsettled)

    # --- reading -----------------------------------------------------------------------

    def _read_loop(self) -> None:
        try:
            self._read()
        except BaseException:
            log.exception("%s reader failed; stopping the runner", self.shard_id)
            self.failed = True
            self._stop.set()
            raise

    def _read(self) -> None:
        iterator = None
        throttle = Backoff(
            base_s=self._tuning.throttle_backoff_s,
            cap_s=self._tuning.max_throttle_backoff_s,
            jitter=False,
        )
        failures = 0
        while not self._stop.is_set():
            with self._cond:
                while self._buffer_full() and not self._stop.is_set():
                    self._cond.wait(0.1)
            if self._stop.is_set():
                return
            try:
                if iterator is None:
                    iterator = self._iterator()
                issued_s = self._clock()
                result = self.source.read(self.shard_id, iterator, self._read_limit())
            except ClientError as exc:
                code = error_code(exc)
                if code in THROTTLING_ERRORS:
                    self.stats.throttled()
                else:
                    log.warning("%s: reading failed (%s), retrying", self.shard_id, code or exc)
                if code == "ExpiredIteratorException" or code not in THROTTLING_ERRORS:
                    iterator = None
                self._stop.wait(throttle.delay_s(failures))
                failures += 1
                continue
            except BotoCoreError as exc:
                log.warning("%s: reading failed (%s), retrying", self.shard_id, exc)
                iterator = None
                self._stop.wait(throttle.delay_s(failures))
                failures += 1
                continue
            failures = 0
            iterator = result.next_iterator
            self._enqueue(
                result.records, result.millis_behind_latest, ended=iterator is None, at_s=issued_s
            )
            if iterator is None:
                return
            if not result.records:
                self._stop.wait(self._tuning.poll_interval_s)

    def _buffer_full(self) -> bool:
        # Records held for a tumbling window are delivered: only their checkpoint waits.
        return (
            len(self._unsettled) - self._held >= self._tuning.max_buffered_records
            or self._buffered_bytes >= self._tuning.max_buffered_bytes
        )

    def _read_limit(self) -> int:
        # Reads of a few thousand keep the pipeline short (the lanes start on the first
        # records sooner); never fewer than a batch, so a full batch can come from one read.
        room = self._tuning.max_buffered_records - len(self._unsettled) + self._held
        return max(self.mapping.batch_size, min(room, self._tuning.read_limit))

    def _iterator(self) -> str:
        if self._last_read is not None:
            return self.source.shard_iterator(
                self.shard_id, "AFTER_SEQUENCE_NUMBER", sequence_number=self._last_read
            )
        start = self._start
        return self.source.shard_iterator(
            self.shard_id,
            start.iterator_type,
            sequence_number=start.sequence_number,
            timestamp=start.timestamp,
        )

    def _enqueue(
        self, records: list[StreamRecord], millis_behind: int | None, ended: bool, at_s: float
    ):
        # Lambda filters each record before batching: a record matching no filter is never
        # delivered, and the iterator moves past it at once (it is settled as it is read), so
        # batches fill up with matching records only.
        # https://docs.aws.amazon.com/lambda/latest/dg/invocation-eventfiltering.html
        criteria = self.mapping.filter_criteria
        if criteria:
            kept = [matches(criteria, json.loads(r.event_json)) for r in records]
        else:
            kept = [True] * len(records)
        self.stats.polled(len(records))
        with self._cond:
            factor = len(self._lanes)
            for record, keep in zip(records, kept, strict=True):
                self._unsettled[record.sequence_number] = not keep
                if keep:
                    self._buffered_bytes += record.data_size
                    self._lanes[lane_of(record.partition_key, factor)].append(record)
            if records:
                self._last_read = records[-1].sequence_number
            dropped = kept.count(False)
            if dropped:
                self.stats.filtered(dropped)
                self._advance_checkpoint()
            self._caught_up = not records and not millis_behind
            self._read_issued_s = at_s
            self._ended = ended
            self._check_finished()
            self._cond.notify_all()
        if self._caught_up and not self._unsettled:
            self.stats.caught_up()

    # --- delivering --------------------------------------------------------------------

    def _lane_loop(self, lane: int) -> None:
        try:
            if self.mapping.tumbling_window_s:
                self._deliver_windows(lane)
                return
            while not self._stop.is_set():
                batch = self._next_batch(lane)
                if batch is None:
                    return
                if not self._delivery.settle(batch, self._settled):
                    return
        except BaseException:
            # A bug of ours, not the function's: stop the runner rather than stall the shard
            # silently; the checkpoint stays before the unsettled batch.
            log.exception("%s lane %d failed; stopping the runner", self.shard_id, lane)
            self.failed = True
            self._stop.set()
            raise

    def _deliver_windows(self, lane: int) -> None:
        """A lane with tumbling windows: each batch lies within one window; a window closes
        with its final invocation once a record of a later window comes, once it has ended
        and the shard has been read past its end, or when the shard ends (Lambda considers
        the window closed then); a state over 1 MB closes it early."""
        window = LaneWindow(
            self.mapping.tumbling_window_s, self.shard_id, self.mapping.event_source_arn
        )
        hold = functools.partial(self._hold, window)
        while not self._stop.is_set():
            batch = self._next_batch(lane, window)
            # None: the shard ended (or the runner stops); []: the window is due to close.
            window_over = window.bounds is not None and (
                not batch or not window.admits(batch[0].arrival_s)
            )
            if window_over and not self._delivery.close_window(window, self._release):
                return
            if batch is None:
                return
            if not batch:
                continue
            window.open_for(batch[0].arrival_s)
            if not self._delivery.settle(batch, hold, window):
                return
            # "Your state can be a maximum of 1 MB per shard. If it exceeds that size, Lambda
            # terminates the window early."
            early = state_too_large(window.state)
            if early and not self._delivery.close_window(window, self._release, early=True):
                return

    def _next_batch(self, lane: int, window: LaneWindow | None = None) -> list[StreamRecord] | None:
        """The lane's next batch; None when stopped or at the shard's end, [] when the open
        tumbling window is due to close."""
        buffer = self._lanes[lane]
        batch_size = self.mapping.batch_size
        window_s = self.mapping.maximum_batching_window_s
        max_bytes = MAX_PAYLOAD_BYTES - PAYLOAD_OVERHEAD_BYTES
        if window is not None:
            max_bytes -= WINDOW_OVERHEAD_BYTES
        with self._cond:
            window_ends = time.monotonic() + window_s
            while not buffer:
                if self._stop.is_set() or self._ended:
                    return None
                if window is not None and window.bounds is not None:
                    end_s = window.bounds.end_s
                    if self._read_issued_s >= end_s:
                        return []
                    self._cond.wait(min(0.5, max(0.01, end_s - self._clock())))
                    continue
                self._cond.wait(0.5)
            # Lambda gathers records until the batch is full, the window ends, or the
            # payload limit is reached.
            while (
                window_s
                and len(buffer) < batch_size
                and not self._ended
                and not self._stop.is_set()
                and sum(r.size + 1 for r in buffer) < max_bytes
            ):
                remaining = window_ends - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            sizes = [r.size for r in itertools.islice(buffer, batch_size)]
            count = take_batch(sizes, batch_size, max_bytes)
            if window is not None:
                arrivals = [r.arrival_s for r in itertools.islice(buffer, count)]
                count = count_in_window(arrivals, self.mapping.tumbling_window_s)
            return [buffer.popleft() for _ in range(count)]

    def _settled(self, records: list[StreamRecord]) -> None:
        """Mark records done and move the checkpoint over the settled prefix."""
        if not records:
            return
        with self._cond:
            for record in records:
                self._unsettled[record.sequence_number] = True
                self._buffered_bytes -= record.data_size
            self._advance_checkpoint()
            self._check_finished()
            self._cond.notify_all()

    def _hold(self, window: LaneWindow, records: list[StreamRecord]) -> None:
        """Records done in an open tumbling window: out of the read-ahead, but checkpointed
        only after the window's final invocation (AWS: "After successful invocation, your
        function checkpoints the sequence number")."""
        if not records:
            return
        with self._cond:
            window.held.extend(r.sequence_number for r in records)
            self._held += len(records)
            self._buffered_bytes -= sum(r.data_size for r in records)
            self._cond.notify_all()

    def _release(self, sequence_numbers: list[str]) -> None:
        """A window closed: checkpoint over the records it held."""
        with self._cond:
            for sequence_number in sequence_numbers:
                self._unsettled[sequence_number] = True
            self._held -= len(sequence_numbers)
            self._advance_checkpoint()
            self._check_finished()
            self._cond.notify_all()

    def _advance_checkpoint(self) -> None:
        """(Under the lock.) Move the checkpoint over the settled prefix of what was read."""
        advanced = None
        while self._unsettled:
            sequence_number, done = next(iter(self._unsettled.items()))
            if not done:
                break
            self._unsettled.popitem(last=False)
            advanced = sequence_number
        if advanced is not None:
            self._last_settled = advanced
            self._store.save(self.shard_id, ShardCheckpoint(advanced))

    def _check_finished(self) -> None:
        """(Under the lock.) A closed shard read to its end with everything settled."""
        if self.finished or not self._ended or self._unsettled:
            return
        if any(self._lanes):
            return
        self.finished = True
        self.stats.finished = True
        self._store.save(self.shard_id, ShardCheckpoint(self._last_settled, finished=True))
        self._on_finished(self.shard_id)
