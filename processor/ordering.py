"""The ordered batch processor: what runs, in which order, and what Lambda is told.

Rules (docs/architecture.md, "processor/ — inside one invocation"):
- records run in the order given; a failed record blocks the later records of its key in this
  batch, other keys go on;
- a record at or below its key's checkpoint is a duplicate and is skipped;
- a record that failed `max_attempts` times, or cannot be parsed, is parked and counts as done;
- a record that breaks its payload contract (the processor's `model`/`schema`, or a
  ContractViolation raised by the user's code) is parked at once: retrying cannot help;
- the response names the lowest failed or unprocessed sequence number (Lambda retries from
  there: https://docs.aws.amazon.com/lambda/latest/dg/services-kinesis-batchfailurereporting.html);
- checkpoints are flushed once per key per batch, before returning and before any re-raise;
- near the deadline no new record is taken: a Lambda timeout would retry the whole batch.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from processor.checkpoint import (
    MAX_UNSETTLED,
    CheckpointKey,
    CheckpointStore,
    CheckpointUpdate,
    KeyState,
    StateKey,
    StateWrite,
    StoredState,
    encode_state,
)
from processor.contracts import (
    REPLAY_MARKER,
    PartialBatchResponse,
    ReplayReport,
    failure_response,
    replay_record_id,
    success_response,
)
from processor.exceptions import (
    ContractViolation,
    EffectRejectedError,
    InvalidPayloadError,
    RecordParseError,
    StaleCheckpointError,
    StateConflictError,
    StateError,
)
from processor.poison import PoisonSink, build_poison_message, utc_now
from processor.records import BatchItem, Position, Record, Unparseable, parse_event
from processor.validation import payload_check, with_payload_check

RecordHandler = Callable[[Record], Sequence[dict] | None]
"""The user's business logic. Raise to fail the record. Return a list of DynamoDB
TransactWriteItems items to have them committed in one transaction with the record's
checkpoint; any other return value is ignored."""

StateFold = Callable[[Record, Any], Any]
"""Keyed state: the user's fold turns a key's state (None at first) and its next record into
the key's new state (JSON-able), or into `NewState(state, effects)`. Raise to fail the record."""


@dataclass(frozen=True, slots=True)
class NewState:
    """What a fold returns when the record also has DynamoDB transaction items to commit with
    the key's state."""

    state: Any
    effects: Sequence[dict] = ()


StateEffects = Callable[[str, Any], Sequence[dict]]
"""Keyed state: the transaction items derived from a key's state as committed (a materialised
view of it, say), given (partition key, state) once per commit instead of once per record."""

# TransactWriteItems takes 100 items; a key's commit spends two on its state and checkpoint
# and keeps MAX_STATE_EFFECTS for the items derived from the state.
# https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_TransactWriteItems.html
MAX_STATE_EFFECTS = 8
MAX_EFFECTS_PER_COMMIT = 100 - 2 - MAX_STATE_EFFECTS
DEFAULT_MAX_CONCURRENCY_KEYED = 16

MIN_SAFETY_MARGIN_MS = 200
MAX_SAFETY_MARGIN_MS = 10_000


def default_safety_margin_ms(remaining_ms: int) -> int:
    """A tenth of the invocation's time, within [200 ms, 10 s]: a 3 s Lambda keeps 2.7 s."""
    return max(MIN_SAFETY_MARGIN_MS, min(MAX_SAFETY_MARGIN_MS, remaining_ms // 10))


@dataclass
class BatchResult:
    response: PartialBatchResponse
    applied: int = 0
    duplicates: int = 0
    failed: int = 0
    parked: int = 0
    blocked: int = 0  # later records of a failed key, left untouched
    unprocessed: int = 0  # not taken because the time budget ran out
    latency_ms: float = 0.0
    resume_point: str | None = None  # the one batchItemFailures identifier, if any


class _Batch:
    """Mutable state of one invocation, indexed by key id (a key's first index in `keys`).

    Lists indexed by small integers keep the per-record loop free of tuple hashing; the
    checkpoint writes are built once, at the flush.
    """

    def __init__(
        self, keys: list[CheckpointKey], states: dict[CheckpointKey, KeyState], replay: bool
    ):
        self.keys = keys
        self.replay = replay
        self.states = [states.get(key) or _NO_STATE for key in keys]
        self.positions: list[Position | None] = [state.position for state in self.states]
        # Keys whose records need more than the position check: some of their records were
        # left unsettled, or were applied by a replay, before this batch.
        self.guarded = [
            bool(state.unsettled or state.replayed or state.parked) for state in self.states
        ]
        self.blocked = [False] * len(keys)
        self.dirty = [False] * len(keys)
        self.failures: dict[int, tuple[Position, int, str]] = {}
        self.parked: dict[int, list[Position]] = {}
        self.replayed: dict[int, list[Position]] = {}
        self.unsettled: dict[int, set[Position]] = {}  # the key's new set, once it changes
        self.retry_from: BatchItem | None = None
        self.report = empty_replay_report() if replay else None
        self.folds: dict[int, _KeyFold] = {}  # keyed state only
        self._lock = threading.Lock()  # keys may run in threads: the shared parts

    def advance(self, key_id: int, position: Position | None) -> None:
        """The key's record at `position` is done (applied or parked); never moves back."""
        if position is None:
            return
        current = self.positions[key_id]
        if current is None or position > current:
            self.positions[key_id] = position
        self.dirty[key_id] = True
        if self.guarded[key_id]:
            self.settle(key_id, position)

    def park(self, key_id: int, position: Position | None) -> None:
        if position is not None:
            self.parked.setdefault(key_id, []).append(position)
        self.advance(key_id, position)

    def settle(self, key_id: int, position: Position) -> None:
        """A record seen unapplied earlier is applied (or parked) now."""
        if position in self.states[key_id].parked and position not in self.parked.get(key_id, ()):
            # Parked before, but its checkpoint was lost and the stream delivered it again,
            # and now it applied: a replay of its poison message must not apply it twice.
            self.replayed.setdefault(key_id, []).append(position)
            self.dirty[key_id] = True
        unsettled = self.unsettled.get(key_id)
        if unsettled is None:
            if position not in self.states[key_id].unsettled:
                return
            unsettled = self.unsettled[key_id] = set(self.states[key_id].unsettled)
        unsettled.discard(position)
        self.dirty[key_id] = True

    def unsettle(self, key_id: int, item: BatchItem) -> None:
        """A record left unapplied in this batch: failed, blocked, or cut by the budget."""
        position = item.position
        if self.replay or position is None:
            return
        current = self.positions[key_id]
        if current is not None and position <= current:
            return  # applied before: a redelivered record the budget cut off
        if position in self.states[key_id].replayed:
            return
        unsettled = self.unsettled.get(key_id)
        if unsettled is None:
            if position in self.states[key_id].unsettled:
                return
            unsettled = self.unsettled[key_id] = set(self.states[key_id].unsettled)
        unsettled.add(position)
        self.dirty[key_id] = True

    def already_replayed(self, key_id: int, position: Position) -> bool:
        return position in self.states[key_id].replayed or position in self.replayed.get(key_id, ())

    def replay_may_apply(self, key_id: int, position: Position) -> bool:
        """A record the processor never applied: parked, left unsettled, or not yet reached."""
        state = self.states[key_id]
        current = self.positions[key_id]
        return (
            current is None
            or position > current
            or position in state.parked
            or position in state.unsettled
        )

    def replayed_now(self, key_id: int, position: Position) -> None:
        self.replayed.setdefault(key_id, []).append(position)
        self.dirty[key_id] = True

    def replay_update(self, key_id: int, positions: Sequence[Position]) -> CheckpointUpdate:
        """Records applied by a replay: the checkpoint and the attempt counter stay."""
        state = self.states[key_id]
        return CheckpointUpdate(
            self.keys[key_id],
            None,
            replayed=tuple(positions),
            leaves_parked=tuple(p for p in positions if p in state.parked),
            leaves_unsettled=tuple(p for p in positions if p in state.unsettled),
            touch_failure=False,
        )

    def record_failure(self, key_id: int, item: BatchItem, attempts: int, at: str) -> None:
        self.failures[key_id] = (item.position, attempts, at)
        self.dirty[key_id] = True
        self.blocked[key_id] = True
        self.unsettle(key_id, item)

    def committed(self, key_id: int, position: Position) -> None:
        """A transaction wrote this key's checkpoint at `position`, its parked records and
        its unsettled set."""
        self.positions[key_id] = position
        self.parked.pop(key_id, None)
        self.replayed.pop(key_id, None)
        if key_id not in self.unsettled:
            self.dirty[key_id] = False

    def snapshot(self, key_id: int) -> tuple:
        unsettled = self.unsettled.get(key_id)
        replayed = self.replayed.get(key_id)
        return (
            None if unsettled is None else set(unsettled),
            None if replayed is None else list(replayed),
            self.dirty[key_id],
        )

    def restore(self, key_id: int, saved: tuple) -> None:
        unsettled, replayed, dirty = saved
        for name, value in (("unsettled", unsettled), ("replayed", replayed)):
            table = getattr(self, name)
            if value is None:
                table.pop(key_id, None)
            else:
                table[key_id] = value
        self.dirty[key_id] = dirty

    def update_for(self, key_id: int, position: Position | None) -> CheckpointUpdate:
        update = CheckpointUpdate(self.keys[key_id], position)
        update.parked = tuple(self.parked.get(key_id, ()))
        update.replayed = tuple(self.replayed.get(key_id, ()))
        unsettled = self.unsettled.get(key_id)
        if unsettled is not None:
            if len(unsettled) > MAX_UNSETTLED:
                unsettled = set(sorted(unsettled)[:MAX_UNSETTLED])
                update.unsettled_truncated = True
            update.unsettled = frozenset(unsettled)
        if key_id in self.failures:
            update.failing_position, update.attempts, update.first_failure_at = self.failures[
                key_id
            ]
        return update

    def updates(self) -> list[CheckpointUpdate]:
        if self.replay:
            return [
                self.replay_update(key_id, self.replayed[key_id])
                for key_id, dirty in enumerate(self.dirty)
                if dirty and self.replayed.get(key_id)
            ]
        return [
            self.update_for(key_id, self.positions[key_id])
            for key_id, dirty in enumerate(self.dirty)
            if dirty
        ]

    def retry_from_here(self, item: BatchItem | None) -> None:
        if item is None or item.sequence_number is None:
            return
        with self._lock:
            current = self.retry_from
            if current is None or int(item.sequence_number) < int(current.sequence_number):
                self.retry_from = item

    def note(self, outcome: str, item: BatchItem) -> None:
        """Replays only: what happened to this record, for the ReplayReport."""
        if self.report is not None and item.sequence_number is not None:
            with self._lock:
                self.report[outcome].append(
                    replay_record_id(item.sequence_number, item.sub_sequence_number)
                )

    def unnote(self, outcome: str, item: BatchItem) -> None:
        if self.report is not None and item.sequence_number is not None:
            record_id = replay_record_id(item.sequence_number, item.sub_sequence_number)
            with self._lock:
                if record_id in self.report[outcome]:
                    self.report[outcome].remove(record_id)


@dataclass
class _Chunk:
    """Records of one key folded into its state, committed together (≤ 100 items)."""

    start_position: Position | None  # the key's position before the first record
    records: list[Record] = field(default_factory=list)
    effects: list[dict] = field(default_factory=list)
    position: Position | None = None  # the last record's
    encoded: str = ""  # the state after the last record, as JSON
    state: Any = None  # the same, as the fold returned it


class _KeyFold:
    """One key's state through one invocation: folded in memory, record by record, and
    committed with the key's checkpoint once at the end (more often only when its effects
    pass one transaction's size). Until then nothing of it is stored."""

    def __init__(
        self, fold: StateFold, key: StateKey, stored: StoredState, batch: _Batch, key_id: int
    ) -> None:
        self.fold = fold
        self.key = key
        self.batch = batch
        self.key_id = key_id
        self.value = stored.value
        self.version = stored.version  # what the next commit expects to find
        self.chunks: list[_Chunk] = []

    def __call__(self, record: Record) -> None:
        """The per-record `apply` of a keyed-state key: returns no effects, since they are
        committed with the state."""
        outcome = self.fold(record, self.value)
        if isinstance(outcome, NewState):
            value, effects = outcome.state, list(outcome.effects)
        else:
            value, effects = outcome, []
        if len(effects) > MAX_EFFECTS_PER_COMMIT:
            raise StateError(
                f"{len(effects)} transaction items for one record: at most "
                f"{MAX_EFFECTS_PER_COMMIT} fit in a transaction with the key's state"
            )
        encoded = encode_state(value)  # raises StateError: the record fails, nothing changes
        chunk = self.chunks[-1] if self.chunks else None
        if chunk is None or len(chunk.effects) + len(effects) > MAX_EFFECTS_PER_COMMIT:
            chunk = _Chunk(self.batch.positions[self.key_id])
            self.chunks.append(chunk)
        chunk.records.append(record)
        chunk.effects.extend(effects)
        chunk.position = record.position
        chunk.encoded = encoded
        chunk.state = value
        self.value = value


_NO_STATE = KeyState()
_NO_STORED_STATE = StoredState()
_EFFECT_TYPES = (list, tuple)  # a tuple: isinstance() with a union type is slower
# Failures that no retry can cure: the record is parked on the first one.
_PARKED_AT_ONCE = (RecordParseError, ContractViolation)


class OrderedProcessor:
    def __init__(
        self,
        apply: RecordHandler,
        *,
        checkpoints: CheckpointStore,
        poison: PoisonSink,
        max_attempts: int = 3,
        safety_margin_ms: int | None = None,
        logger: Any = None,
        metrics: Any = None,
        clock: Callable[[], float] = time.monotonic,
        keyed_state: bool = False,
        max_concurrency: int | None = None,
        state_effects: StateEffects | None = None,
        model: Any = None,
        schema: dict | None = None,
    ) -> None:
        """`model` (a pydantic model, or any type pydantic validates) and/or `schema` (a JSON
        Schema) describe the payload: Kinesis data as JSON, DynamoDB's NewImage. A record
        whose payload does not match is parked at once, before `apply`/`fold` runs; the
        others reach it with `record.model` set (processor/validation.py)."""
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        if max_concurrency is None:
            max_concurrency = DEFAULT_MAX_CONCURRENCY_KEYED if keyed_state else 1
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
        self.apply = apply
        # With keyed_state, `apply` is a StateFold: fold(record, state) -> new state.
        self.payload_check = payload_check(model, schema)  # None: no per-record cost
        self.keyed_state = keyed_state
        self.max_concurrency = max_concurrency
        if state_effects is not None and not keyed_state:
            raise ValueError("state_effects needs keyed_state=True")
        self.state_effects = state_effects
        self.checkpoints = checkpoints
        self.poison = poison
        self.max_attempts = max_attempts
        self.safety_margin_ms = safety_margin_ms
        self.logger = logger or _default_logger()
        self.metrics = metrics
        self.clock = clock  # seconds, monotonic; tests inject one to run the budget out
        self.last_result: BatchResult | None = None

    def process(self, event: dict, context: Any = None) -> PartialBatchResponse:
        """Process one Lambda batch; returns the partial batch response for Lambda."""
        return self.process_batch(event, context).response

    def process_batch(self, event: dict, context: Any = None) -> BatchResult:
        started = self.clock()
        deadline = self._deadline(context, started)
        items = parse_event(event)
        replay = is_replay(event)
        if replay:
            for item in items:
                if type(item) is Record:
                    item.replay = True
        ids: dict[tuple[str, str, str], int] = {}
        key_ids = [
            ids.setdefault((i.event_source_arn, i.shard_id, i.partition_key), len(ids))
            for i in items
        ]
        keys = [CheckpointKey._make(key) for key in ids]  # in id order
        # A store that cannot be read raises here, before anything ran: Lambda retries.
        batch = _Batch(keys, self.checkpoints.load(keys) if keys else {}, replay)
        result = BatchResult(response=success_response())
        apply = self.apply
        if self.payload_check is not None:  # decided once per batch, never per record
            apply = with_payload_check(apply, self.payload_check, keyed=self.keyed_state)
        if self.keyed_state and keys:
            state_keys = {StateKey(key.event_source_arn, key.partition_key) for key in keys}
            stored = self.checkpoints.load_states(state_keys)
            for key_id, key in enumerate(keys):
                state_key = StateKey(key.event_source_arn, key.partition_key)
                batch.folds[key_id] = _KeyFold(
                    apply, state_key, stored.get(state_key, _NO_STORED_STATE), batch, key_id
                )
        try:
            if self.keyed_state or self.max_concurrency > 1:
                self._run_by_key(items, key_ids, batch, result, deadline, apply)
            else:
                self._run_all(items, key_ids, batch, result, deadline, apply)
        finally:
            # Flushed on success and before any re-raise (the applied records stay applied).
            self.checkpoints.save(batch.updates())
        if batch.retry_from is not None:
            result.resume_point = batch.retry_from.sequence_number
            result.response = failure_response(result.resume_point)
        if batch.report is not None:
            result.response[REPLAY_MARKER] = batch.report
        result.latency_ms = (self.clock() - started) * 1000
        self._report(result, items)
        self.last_result = result
        return result

    def _run_by_key(
        self,
        items: list[BatchItem],
        key_ids: list[int],
        batch: _Batch,
        result: BatchResult,
        deadline: float | None,
        apply: RecordHandler,
    ) -> None:
        """Each key's records in order, keys side by side on up to `max_concurrency` threads;
        returns once every key has finished or stopped (a key's infrastructure error is
        re-raised then)."""
        runs: dict[int, list[BatchItem]] = {}
        for key_id, item in zip(key_ids, items, strict=True):
            runs.setdefault(key_id, []).append(item)

        def run_key(key_id: int) -> BatchResult:
            key_result = BatchResult(response=result.response)
            fold = batch.folds.get(key_id)
            run = runs[key_id]
            try:
                self._run_all(run, [key_id] * len(run), batch, key_result, deadline, fold or apply)
            except BaseException as exc:
                if fold is not None:  # the flush must not move the key past its stored state
                    self._lose_state(key_id, fold, 0, batch, None, exc)
                raise
            if fold is not None:
                self._commit_state(key_id, fold, batch, key_result)
            return key_result

        workers = min(self.max_concurrency, len(runs))
        if workers <= 1:
            outcomes = [run_key(key_id) for key_id in runs]
        else:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="key") as pool:
                futures = [pool.submit(run_key, key_id) for key_id in runs]
            outcomes = [future.result() for future in futures]  # the first error re-raises
        for outcome in outcomes:
            for name in ("applied", "duplicates", "failed", "parked", "blocked", "unprocessed"):
                setattr(result, name, getattr(result, name) + getattr(outcome, name))

    def _commit_state(
        self, key_id: int, fold: _KeyFold, batch: _Batch, result: BatchResult
    ) -> bool:
        """The key's one write: its state, checkpoint and effects in one transaction per
        chunk (one chunk unless its effects pass a transaction's size). False when another
        invocation moved the key and nothing from the lost chunk on was kept."""
        for index, chunk in enumerate(fold.chunks):
            last = index == len(fold.chunks) - 1
            if batch.replay:
                replayed = [r.position for r in chunk.records]
                update = batch.replay_update(key_id, replayed)
            elif last:
                update = batch.update_for(key_id, batch.positions[key_id])
            else:
                update = CheckpointUpdate(batch.keys[key_id], chunk.position)
            write = StateWrite(fold.key, chunk.encoded, fold.version)
            try:
                effects = chunk.effects + self._state_effects(fold, chunk)
                self.checkpoints.commit_state(update, write, effects)
            except (StateConflictError, StaleCheckpointError) as exc:
                self._lose_state(key_id, fold, index, batch, result, exc)
                return False
            except BaseException as exc:
                self._lose_state(key_id, fold, index, batch, None, exc, in_doubt=True)
                raise
            fold.version += 1
        if fold.chunks:
            batch.parked.pop(key_id, None)
            batch.replayed.pop(key_id, None)
            batch.dirty[key_id] = False
            fold.chunks.clear()
        return True

    def _state_effects(self, fold: _KeyFold, chunk: _Chunk) -> list[dict]:
        if self.state_effects is None:
            return []
        effects = list(self.state_effects(fold.key.partition_key, chunk.state))
        if len(effects) > MAX_STATE_EFFECTS:
            raise ValueError(
                f"state_effects gave {len(effects)} items; at most {MAX_STATE_EFFECTS} fit"
            )
        return effects

    def _lose_state(
        self,
        key_id: int,
        fold: _KeyFold,
        first_lost: int,
        batch: _Batch,
        result: BatchResult | None,
        exc: BaseException,
        in_doubt: bool = False,
    ) -> None:
        """Nothing of the key's chunks from `first_lost` on is kept: another invocation moved
        the key (or this one is failing). The checkpoint stays at what was committed; the
        records count as left unapplied, and the retry folds them from the stored state (or
        skips them as duplicates). `in_doubt`: the first lost chunk's commit failed with no
        answer, so it may have landed; its records are not claimed unapplied (a replay
        would apply them twice), only left for the retry, whose dedup decides."""
        lost = fold.chunks[first_lost:]
        del fold.chunks[first_lost:]
        records = [record for chunk in lost for record in chunk.records]
        if not records:
            return
        doubtful = {id(record) for record in lost[0].records} if in_doubt else set()
        # Not applied, so not "replayed" either (had the doubtful commit landed, it recorded
        # them itself, with the state).
        lost_positions = {record.position for record in records}
        replayed = [p for p in batch.replayed.get(key_id, ()) if p not in lost_positions]
        batch.replayed[key_id] = replayed
        if batch.replay:
            for record in records:
                batch.unnote("applied", record)
                batch.note("failed", record)
        else:
            batch.positions[key_id] = lost[0].start_position
            for record in records:
                if id(record) not in doubtful:
                    batch.unsettle(key_id, record)
        if result is None:
            return  # the batch is failing: Lambda retries all of it
        batch.retry_from_here(records[0])
        result.applied -= len(records)
        result.unprocessed += len(records)
        self.logger.warning(
            "key's state moved in another invocation; its records are left for the retry",
            extra={**_coordinates(records[0]), "outcome": "retry", "error": str(exc)},
        )

    def _run_all(
        self,
        items: list[BatchItem],
        key_ids: list[int],
        batch: _Batch,
        result: BatchResult,
        deadline: float | None,
        apply: RecordHandler,
    ) -> None:
        # The per-record loop: the common path (a new record that applies) stays inline.
        positions, dirty, blocked = batch.positions, batch.dirty, batch.blocked
        clock = self.clock
        guarded, replay = batch.guarded, batch.replay
        for index, (key_id, item) in enumerate(zip(key_ids, items, strict=True)):
            if deadline is not None and clock() >= deadline:
                self._stop_for_time(items[index:], key_ids[index:], batch, result)
                return
            if blocked[key_id]:
                result.blocked += 1
                batch.unsettle(key_id, item)
                batch.note("blocked", item)
                continue
            if replay:
                self._replay_one(item, key_id, batch, result, apply)
                continue
            # Dedup comes first for every record, parseable or not: a redelivered record
            # that was parked (or applied) is behind its key's checkpoint.
            position = item.position
            current = positions[key_id]
            if position is not None and current is not None and position <= current:
                result.duplicates += 1
                continue
            if guarded[key_id] and position in batch.states[key_id].replayed:
                # Applied by a replay before the stream got here.
                result.duplicates += 1
                batch.advance(key_id, position)
                continue
            if type(item) is Unparseable:
                self._park(
                    item, key_id, batch, result, item.error, attempts=1, first_failure_at=utc_now()
                )
                continue
            try:
                effects = apply(item)
            except Exception as exc:  # any failure of user code is the record's, not the batch's
                self._fail(item, key_id, exc, batch, result)
                continue
            if effects and isinstance(effects, _EFFECT_TYPES):
                self._commit_with_effects(item, key_id, list(effects), batch, result)
                continue
            if guarded[key_id]:
                batch.advance(key_id, position)
            else:
                positions[key_id] = position
                dirty[key_id] = True
            result.applied += 1

    def _replay_one(
        self,
        item: BatchItem,
        key_id: int,
        batch: _Batch,
        result: BatchResult,
        apply: RecordHandler,
    ) -> None:
        """A replayed record is applied only if the processor never applied it, and once."""
        if type(item) is Unparseable:  # it cannot parse now either
            if item.position is not None and item.position in batch.states[key_id].parked:
                batch.note("parked", item)  # on the poison queue with its payload already
                result.duplicates += 1
                return
            batch.note("unparseable", item)
            self._fail(item, key_id, item.error, batch, result)
            return
        position = item.position
        if batch.already_replayed(key_id, position):
            batch.note("alreadyReplayed", item)
            result.duplicates += 1
            return
        if not batch.replay_may_apply(key_id, position):
            state = batch.states[key_id]
            batch.note("unknown" if state.unsettled_truncated else "appliedInOrder", item)
            result.duplicates += 1
            return
        try:
            effects = apply(item)
        except Exception as exc:
            self._fail(item, key_id, exc, batch, result)
            return
        if effects and isinstance(effects, _EFFECT_TYPES):
            self._commit_replayed_with_effects(item, key_id, list(effects), batch, result)
            return
        batch.replayed_now(key_id, position)
        batch.note("applied", item)
        result.applied += 1

    def _stop_for_time(
        self, rest: list[BatchItem], rest_key_ids: list[int], batch: _Batch, result: BatchResult
    ):
        result.unprocessed = len(rest)
        for key_id, item in zip(rest_key_ids, rest, strict=True):
            batch.unsettle(key_id, item)
            batch.note("unprocessed", item)
        batch.retry_from_here(_first_with_sequence_number(rest))
        self.logger.warning(
            "time budget reached: leaving the rest of the batch for the retry",
            extra={"unprocessed": result.unprocessed, **_coordinates(rest[0])},
        )

    def _commit_with_effects(
        self, item: Record, key_id: int, effects: list[dict], batch: _Batch, result: BatchResult
    ) -> None:
        # Records of this key parked earlier in the batch, and the key's unsettled set, are
        # written with it: the record leaves the unsettled set in the same transaction. Until
        # the transaction commits, the batch's own view must not say so (its flush would).
        saved = batch.snapshot(key_id)
        if batch.guarded[key_id]:
            batch.settle(key_id, item.position)
        update = batch.update_for(key_id, item.position)
        update.failing_position, update.attempts, update.first_failure_at = None, 0, None
        try:
            self.checkpoints.commit_with_effects(update, effects)
        except StaleCheckpointError:
            # The store is already past this record: its effect was committed before.
            result.duplicates += 1
            batch.advance(key_id, item.position)
        except EffectRejectedError as exc:
            batch.restore(key_id, saved)
            self._fail(item, key_id, exc, batch, result)
        except BaseException:
            batch.restore(key_id, saved)
            raise
        else:
            result.applied += 1
            batch.committed(key_id, item.position)

    def _commit_replayed_with_effects(
        self, item: Record, key_id: int, effects: list[dict], batch: _Batch, result: BatchResult
    ) -> None:
        # The checkpoint stays; the record joins the key's replayed set, once only.
        update = batch.replay_update(key_id, [item.position])
        try:
            self.checkpoints.commit_with_effects(update, effects)
        except StaleCheckpointError:
            batch.note("alreadyReplayed", item)  # a concurrent replay committed it first
            result.duplicates += 1
        except EffectRejectedError as exc:
            self._fail(item, key_id, exc, batch, result)
        else:
            batch.note("applied", item)
            result.applied += 1

    def _fail(
        self,
        item: BatchItem,
        key_id: int,
        exc: BaseException,
        batch: _Batch,
        result: BatchResult,
    ) -> None:
        if batch.replay:
            # A replay neither counts attempts nor parks again: the message it came from stays
            # on its queue, and the response says where the replay stopped.
            if isinstance(exc, RecordParseError) and type(item) is Record:
                # Data found invalid on first access: as unparseable as ever (and already on
                # the poison queue when the key's parked set says so).
                parked = item.position in batch.states[key_id].parked
                batch.note("parked" if parked else "unparseable", item)
                if parked:
                    result.duplicates += 1
                    return
            elif type(item) is not Unparseable:
                batch.note("failed", item)
            self.logger.warning(
                "replayed record failed",
                extra={
                    **_coordinates(item),
                    "outcome": "failed",
                    "error": _loggable(exc),
                    "error_type": type(exc).__name__,
                },
            )
            batch.blocked[key_id] = True
            batch.retry_from_here(item)
            result.failed += 1
            return
        state = batch.states[key_id]
        attempts = state.attempts_at(item.position) + 1
        first_failure_at = (
            state.first_failure_at
            if state.failing_position == item.position and state.first_failure_at
            else utc_now()
        )
        coordinates = _coordinates(item)
        # Data found invalid on first access can never succeed: parked now, like a record
        # that could not be parsed at all; so is a record that breaks its contract.
        if attempts >= self.max_attempts or isinstance(exc, _PARKED_AT_ONCE):
            self._park(
                item,
                key_id,
                batch,
                result,
                exc,
                attempts=attempts,
                first_failure_at=first_failure_at,
            )
            return
        self.logger.warning(
            "record failed; its key waits for the retry",
            extra={
                **coordinates,
                "outcome": "failed",
                "attempts": attempts,
                "error_type": type(exc).__name__,
                "error": _loggable(exc),
            },
        )
        batch.record_failure(key_id, item, attempts, first_failure_at)
        batch.retry_from_here(item)
        result.failed += 1

    def _park(
        self,
        item: BatchItem,
        key_id: int,
        batch: _Batch,
        result: BatchResult,
        exc: BaseException,
        *,
        attempts: int,
        first_failure_at: str,
    ) -> None:
        """Park the record, and count it done: its key goes on."""
        fold = batch.folds.get(key_id)
        if fold is not None and fold.chunks and not self._commit_state(key_id, fold, batch, result):
            # Keyed state: the key's earlier records commit before this one leaves for the
            # poison queue (per-key order holds on the queue too). They were lost to another
            # invocation, so this record waits behind them for the retry.
            batch.blocked[key_id] = True
            batch.unsettle(key_id, item)
            result.unprocessed += 1
            return
        message = build_poison_message(
            item, exc, attempts=attempts, first_failure_at=first_failure_at
        )
        if type(item) is Record and not isinstance(exc, RecordParseError):
            # The key's parked set learns of the record before the queue does, so that every
            # poison message names a record the store knows was parked: if the batch's flush
            # is then lost and the ESM gives up, a replay can still apply it (and only once).
            # One extra write, on the rare path. Not for an unparseable record (nor one whose
            # data proved invalid on first access): nothing can
            # apply it, and for it "in the parked set" must mean "on the queue" (the flush,
            # after the send, writes it), which is what lets a replay count it as settled.
            self.checkpoints.save(
                [
                    CheckpointUpdate(
                        batch.keys[key_id], None, parked=(item.position,), touch_failure=False
                    )
                ]
            )
        self.poison.park(message)  # PoisonSinkUnavailable propagates: the batch must retry
        self.logger.error(
            "record parked",
            extra={
                **_coordinates(item),
                "outcome": "parked",
                "attempts": attempts,
                "error_type": type(exc).__name__,
                "error": _loggable(exc),
                "truncated": bool(message.get("truncated")),
            },
        )
        batch.park(key_id, item.position)
        result.parked += 1

    def _deadline(self, context: Any, started: float) -> float | None:
        remaining = getattr(context, "get_remaining_time_in_millis", None)
        if remaining is None:
            return None
        remaining_ms = int(remaining())
        margin_ms = self.safety_margin_ms
        if margin_ms is None:
            margin_ms = default_safety_margin_ms(remaining_ms)
        return started + (remaining_ms - margin_ms) / 1000

    def _report(self, result: BatchResult, items: list[BatchItem]) -> None:
        first = items[0] if items else None
        self.logger.info(
            "batch processed",
            extra={
                "shard_id": first.shard_id if first else None,
                "event_source_arn": first.event_source_arn if first else None,
                "records": len(items),
                "applied": result.applied,
                "duplicates": result.duplicates,
                "failed": result.failed,
                "parked": result.parked,
                "blocked": result.blocked,
                "unprocessed": result.unprocessed,
                "resume_point": result.resume_point,
                "latency_ms": round(result.latency_ms, 3),
            },
        )
        if self.metrics is None:
            return
        from aws_lambda_powertools.metrics import MetricUnit

        for name, value in (
            ("RecordsApplied", result.applied),
            ("DuplicatesSkipped", result.duplicates),
            ("RecordsFailed", result.failed),
            ("RecordsParked", result.parked),
        ):
            self.metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
        self.metrics.add_metric(
            name="BatchLatency", unit=MetricUnit.Milliseconds, value=result.latency_ms
        )


def empty_replay_report() -> ReplayReport:
    return {
        "applied": [],
        "alreadyReplayed": [],
        "appliedInOrder": [],
        "unknown": [],
        "failed": [],
        "blocked": [],
        "unparseable": [],
        "parked": [],
        "unprocessed": [],
    }


def is_replay(event: Any) -> bool:
    """An event built by a replay tool (scripts/replay.py) from parked or given-up records."""
    return isinstance(event, dict) and event.get(REPLAY_MARKER) is True


def _first_with_sequence_number(items: Sequence[BatchItem]) -> BatchItem | None:
    return next((item for item in items if item.sequence_number is not None), None)


def _loggable(exc: BaseException) -> str:
    """The error as logged: an invalid payload's message without its inputs (payloads are
    not logged above DEBUG); the poison message keeps them."""
    if isinstance(exc, InvalidPayloadError):
        return exc.summary()
    return str(exc)


def _coordinates(item: BatchItem) -> dict:
    return {
        "shard_id": item.shard_id,
        "sequence_number": item.sequence_number,
        "sub_sequence_number": item.sub_sequence_number,
        "partition_key": item.partition_key,
    }


_logger = None


def _default_logger() -> Any:
    global _logger
    if _logger is None:
        from aws_lambda_powertools import Logger

        _logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "streamline"))
    return _logger
