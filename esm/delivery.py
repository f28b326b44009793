"""Settling one batch the way Lambda does: invoke, read the result, retry, bisect, give up.

The rules are the pure functions of ``esm/rules.py``; this module sequences them around the
invocation and the on-failure destination.
https://docs.aws.amazon.com/lambda/latest/dg/services-kinesis-errors.html
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from esm.invoker import Invocation
from esm.onfailure import Condition, on_failure_record
from esm.rules import (
    InvalidBatchResponse,
    bisect,
    count_expired,
    parse_batch_item_failures,
    retries_exhausted,
)
from esm.settings import FunctionSettings, MappingSettings
from esm.sources import StreamRecord, event_payload
from esm.stats import ShardStats
from esm.windows import LaneWindow, returned_state
from processor.aws import Backoff

log = logging.getLogger("esm")


@dataclass
class _Attempt:
    records: list[StreamRecord]
    retries: int = 0  # retries used by these records (bisect halves start afresh)
    invocations: int = 0


class BatchDelivery:
    """Delivers batches of one shard lane until each record is settled: processed, or handed
    to the on-failure destination (or dropped when there is none, as Lambda does)."""

    def __init__(
        self,
        *,
        mapping: MappingSettings,
        function: FunctionSettings,
        shard_id: str,
        invoke: Callable[[str], Invocation],
        destination,
        stats: ShardStats,
        retry_backoff: Backoff,
        stop: threading.Event,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.mapping = mapping
        self.function = function
        self.shard_id = shard_id
        self._invoke = invoke
        self._destination = destination
        self._stats = stats
        self._retry_backoff = retry_backoff
        self._stop = stop
        self._clock = clock

    def settle(
        self,
        batch: list[StreamRecord],
        settled: Callable[[list[StreamRecord]], None],
        window: LaneWindow | None = None,
    ) -> bool:
        """Deliver ``batch``; ``settled`` is called with each run of records in order as it
        is done. False when the runner stopped first (the rest will be redelivered).

        With a tumbling ``window`` (open, and the batch within it), each invocation carries
        the window's state and a successful one replaces it with the state returned."""
        pending: deque[_Attempt] = deque([_Attempt(batch)])
        while pending:
            attempt = pending.popleft()
            records = self._drop_expired(attempt, settled)
            if not records:
                continue
            if self._stop.is_set():
                return False
            payload = event_payload(records)
            invocation = self._invoke(window.payload(payload) if window else payload)
            attempt.invocations += 1
            self._stats.invoked(invocation.error is not None, len(records))
            if invocation.error is not None:
                error = invocation.error
                log.warning(
                    "%s %s: function error on %d records (%s..%s), retry %d: %s: %s",
                    self.function.name,
                    self.shard_id,
                    len(records),
                    records[0].sequence_number,
                    records[-1].sequence_number,
                    attempt.retries,
                    error.error_type,
                    error.message,
                )
            failed_from, function_error = self._failure_point(invocation, records, window)
            if failed_from is not None:
                self._stats.invocation_failed(len(records))
            if window is not None and failed_from != 0:
                # The records before a partial failure are done: their state counts.
                window.state = returned_state(invocation.response)
            if failed_from is None:
                settled(records)
                self._stats.processed(records, self._clock())
                continue
            if failed_from:
                settled(records[:failed_from])
                self._stats.processed(records[:failed_from], self._clock())
                records = records[failed_from:]
            if (
                invocation.error is not None
                and self.mapping.bisect_batch_on_function_error
                and len(records) > 1
            ):
                # Splitting does not count toward the retry quota; settle the first half
                # before the second (AWS documents no order; this one keeps per-key order).
                first, second = bisect(records)
                self._stats.bisected()
                pending.extendleft([_Attempt(second), _Attempt(first)])
                continue
            if retries_exhausted(attempt.retries, self.mapping.maximum_retry_attempts):
                if not self._give_up(
                    records,
                    Condition.RETRY_ATTEMPTS_EXHAUSTED,
                    invocation.request_id,
                    attempt.invocations,
                    function_error,
                ):
                    return False
                settled(records)
                continue
            self._stats.retried()
            if self._stop.wait(self._retry_backoff.delay_s(attempt.retries)):
                return False
            pending.appendleft(_Attempt(records, attempt.retries + 1, attempt.invocations))
        return True

    def close_window(
        self,
        window: LaneWindow,
        release: Callable[[list[str]], None],
        *,
        early: bool = False,
    ) -> bool:
        """The window's final invocation, with no records and its last state; then its
        records are checkpointed (``release``). "If invocation is unsuccessful, your Lambda
        function suspends further processing until a successful invocation": retried until
        it succeeds, or the runner stops (False; the window's records are redelivered)."""
        payload = window.payload(event_payload([]), final=True, early=early)
        failures = 0
        while not self._stop.is_set():
            invocation = self._invoke(payload)
            self._stats.invoked(invocation.error is not None)
            if invocation.error is None:
                release(window.finish(early=early))
                return True
            log.warning(
                "%s %s: final window invocation failed, retry %d: %s: %s",
                self.function.name,
                self.shard_id,
                failures,
                invocation.error.error_type,
                invocation.error.message,
            )
            self._stats.retried()
            if self._stop.wait(self._retry_backoff.delay_s(failures)):
                return False
            failures += 1
        return False

    def _failure_point(
        self, invocation: Invocation, records: list[StreamRecord], window: LaneWindow | None
    ) -> tuple[int | None, str | None]:
        """Index of the first record to retry (None: all succeeded), and the on-failure
        record's functionError for it."""
        if invocation.error is not None:
            return 0, invocation.error.function_error
        try:
            if window is not None:
                returned_state(invocation.response)
            if not self.mapping.report_batch_item_failures:
                return None, None
            failed_from = parse_batch_item_failures(
                invocation.response, [r.sequence_number for r in records]
            )
        except InvalidBatchResponse as exc:
            log.warning("%s %s: whole batch failed: %s", self.function.name, self.shard_id, exc)
            return 0, None  # the function returned: functionError is null
        if failed_from is not None:
            self._stats.partial_failure()
        return failed_from, None

    def _drop_expired(
        self, attempt: _Attempt, settled: Callable[[list[StreamRecord]], None]
    ) -> list[StreamRecord]:
        records = attempt.records
        expired = count_expired(
            [r.arrival_s for r in records], self._clock(), self.mapping.maximum_record_age_s
        )
        if not expired:
            return records
        request_id = str(uuid.uuid4())
        if not self._give_up(
            records[:expired], Condition.RECORD_AGE_EXCEEDED, request_id, attempt.invocations, None
        ):
            return []
        settled(records[:expired])
        return records[expired:]

    def _give_up(
        self,
        records: list[StreamRecord],
        condition: Condition,
        request_id: str,
        invocations: int,
        function_error: str | None,
    ) -> bool:
        """Hand records to the on-failure destination; False if stopped before it took them."""
        if self._destination is None:
            self._stats.gave_up(len(records), condition, to_destination=False)
            log.warning(
                "%s %s: %s, no on-failure destination: discarding %d records (%s..%s)",
                self.function.name,
                self.shard_id,
                condition.value,
                len(records),
                records[0].sequence_number,
                records[-1].sequence_number,
            )
            return True
        record = on_failure_record(
            records=records,
            shard_id=self.shard_id,
            stream_arn=self.mapping.event_source_arn,
            function_arn=self.function.arn,
            condition=condition,
            request_id=request_id,
            invoke_count=invocations,
            function_error=function_error,
            now_s=self._clock(),
        )
        attempt = 0
        while True:
            try:
                self._destination.send(record)
                self._stats.gave_up(len(records), condition, to_destination=True)
                return True
            except Exception as exc:  # the destination is down: keep the shard where it is
                log.warning("on-failure destination unreachable, retrying: %s", exc)
                if self._stop.wait(max(0.05, self._retry_backoff.delay_s(attempt))):
                    return False
                attempt += 1
