"""A seeded simulation of Lambda's stream event source mapping around OrderedProcessor.

The ESM side follows Lambda's rules (the same ones esm/ implements): batches from one shard in
order; a partial failure resumes from the reported record and counts as a retry; a function
error retries the batch, or bisects it when BisectBatchOnFunctionError is on (splits do not
count as retries); when retries run out the batch (or the failing suffix) goes to the
on-failure destination and the shard moves on. On top of that it injects what the real world
adds: duplicate and stale deliveries, the time budget running out mid-batch, and a checkpoint
store that fails before or after a write.

Afterwards the user fixes the bug behind the poison records and replays both queues, as
scripts/replay.py does: the poison messages (from their payloads) and the on-failure batches
(from the stream). Only what the processor's ReplayReport says is applied counts as deletable.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass, field
from enum import Enum

from pydantic import BaseModel, Field, StrictInt

from processor import OrderedProcessor
from processor.checkpoint import MemoryCheckpointStore
from processor.contracts import REPLAY_MARKER, REPLAY_SUB_SEQUENCE_NUMBER, replay_record_id
from processor.exceptions import CheckpointStoreUnavailable
from processor.ordering import NewState
from processor.poison import MemoryPoisonSink
from processor.records import Position


class Fate(Enum):
    OK = "ok"
    TRANSIENT = "transient"  # fails a few times, then applies
    POISON = "poison"  # fails until the user fixes the bug
    # Its payload breaks the processor's model (`Versioned`): parked before the application
    # sees it, on the first try, and never applied (a replay finds it as broken as ever).
    CONTRACT = "contract"


class Versioned(BaseModel):
    """The contract of the simulated payloads, when a scenario validates them: `"v": 1`."""

    v: StrictInt = Field(ge=1, le=1)


CONTRACT_VERSION = {"v": 1}  # in a payload that keeps the contract
BROKEN_VERSION = {"v": "1"}  # in one that breaks it (a string where an integer belongs)


@dataclass
class UserRecord:
    key: str  # the partition key as the processor sees it
    position: Position
    fate: Fate
    failures_left: int = 0


@dataclass
class StreamRecord:
    raw: dict  # the record as Lambda puts it in the event
    sequence_number: int
    users: list[UserRecord]  # empty when the record cannot be parsed
    key: str  # the key of an unparseable record (its partition key / item key)


@dataclass
class Faults:
    store_failure_rate: float = 0.0  # per store call
    store_write_failures: bool = True  # writes fail too, not only reads
    store_fails_after_write: bool = False  # the write lands, the answer is lost
    bisect: bool = False
    max_retry_attempts: int | None = None  # None: until the record expires (never, here)
    duplicate_rate: float = 0.0  # a settled batch delivered again
    stale_rate: float = 0.0  # an old batch delivered after newer ones
    budget_cut_rate: float = 0.0  # the time budget runs out mid-batch
    max_batch_size: int = 10


@dataclass
class OnFailure:
    start: int  # indexes into the stream
    end: int
    function_error: str | None  # None after a response, "Unhandled" after a raise


class FlakyStore:
    """A MemoryCheckpointStore whose calls fail at a rate, before or after the write."""

    def __init__(self, inner: MemoryCheckpointStore, rng: random.Random, faults: Faults):
        self.inner = inner
        self.rng = rng
        self.faults = faults
        self.enabled = True
        self.write_faults = 0
        self.timeline: list = []  # shared with the application and the poison sink
        self.stats = inner.stats

    def _maybe_fail(self, operation: str) -> None:
        if self.enabled and self.rng.random() < self.faults.store_failure_rate:
            raise CheckpointStoreUnavailable(f"simulated: {operation} unreachable")

    def load(self, keys):
        self._maybe_fail("load")
        return self.inner.load(keys)

    def save(self, updates):
        self._before_write("save")
        self.inner.save(updates)
        self._after_write("save")

    def commit_with_effects(self, update, effects):
        self._before_write("commit")
        self.inner.commit_with_effects(update, effects)
        self._note(effects)
        self._after_write("commit")

    def load_states(self, keys):
        self._maybe_fail("load states")
        return self.inner.load_states(keys)

    def commit_state(self, update, state, effects=()):
        self._before_write("commit state")
        self.inner.commit_state(update, state, effects)
        self._note(effects)
        self._after_write("commit state")

    def _note(self, effects) -> None:
        for effect in effects:
            put = effect["Put"]
            self.timeline.append((put["key"], put["position"], put["replay"]))

    def _before_write(self, operation: str) -> None:
        if not self.faults.store_write_failures:
            return
        try:
            self._maybe_fail(operation)
        except CheckpointStoreUnavailable:
            self.write_faults += 1
            raise

    def _after_write(self, operation: str) -> None:
        if self.faults.store_fails_after_write:
            try:
                self._maybe_fail(operation + " (answer lost)")
            except CheckpointStoreUnavailable:
                self.write_faults += 1
                raise


class TimelineSink(MemoryPoisonSink):
    """Parks like MemoryPoisonSink and notes the record as settled on the shared timeline."""

    def __init__(self, timeline: list):
        super().__init__()
        self.timeline = timeline

    def park(self, message) -> None:
        super().park(message)
        position = (int(message["sequenceNumber"]), message["subSequenceNumber"])
        self.timeline.append((message["partitionKey"], position, False))


class Application:
    """The user's business logic: fails by each record's fate; returns its effect."""

    def __init__(self, users: dict[Position, UserRecord], transactional: bool, keyed: bool):
        self.users = users
        self.transactional = transactional or keyed
        self.keyed = keyed  # a fold: the key's state lists the positions it took in
        self.fixed = False  # the bug behind the poison records is fixed (before replays)
        self.plain_effects: list[tuple[str, Position, bool]] = []
        # (key, position, replayed) of every record settled: applied, or parked.
        self.timeline: list[tuple[str, Position, bool]] = []

    def __call__(self, record, state=None):
        record.data  # noqa: B018 (data that is not base64 raises here, on first access)
        user = self.users[record.position]
        assert record.partition_key == user.key, (record.partition_key, user.key)
        assert user.fate is not Fate.CONTRACT, f"a broken payload reached the application: {user}"
        if user.fate is Fate.POISON and not self.fixed:
            raise ValueError(f"poison record {record.position}")
        if user.failures_left > 0:
            user.failures_left -= 1
            raise RuntimeError(f"transient failure of {record.position}")
        if not self.transactional:
            self.plain_effects.append((user.key, record.position, record.replay))
            self.timeline.append((user.key, record.position, record.replay))
            return None
        effect = {"Put": {"key": user.key, "position": record.position, "replay": record.replay}}
        if self.keyed:
            return NewState([*(state or []), list(record.position)], [effect])
        return [effect]


class QuietLogger:
    """Thousands of batches per run: Powertools' JSON lines would dominate the run time."""

    def _ignore(self, *args, **kwargs) -> None:
        pass

    debug = info = warning = error = exception = _ignore


class Clock:
    """One millisecond per reading: the time budget runs out at a chosen record."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 0.001
        return self.now


class BudgetContext:
    def __init__(self, remaining_ms: int):
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@dataclass
class Outcome:
    invocations: int = 0
    drained: bool = False
    on_failure: list[OnFailure] = field(default_factory=list)
    kept: set[Position] = field(default_factory=set)  # records of messages replay must keep
    deleted: set[Position] = field(default_factory=set)  # records replay may delete
    kept_messages: list[Kept] = field(default_factory=list)


@dataclass
class Kept:
    """A message the replay had to keep: what it was and what the report said."""

    poison: bool
    function_error: str | None
    positions: list[Position]
    report: dict


class Simulation:
    def __init__(
        self,
        stream: list[StreamRecord],
        faults: Faults,
        rng: random.Random,
        *,
        transactional: bool,
        max_attempts: int,
        keyed: bool = False,
        model: type[BaseModel] | None = None,
    ):
        self.stream = stream
        self.faults = faults
        self.rng = rng
        self.users = {u.position: u for record in stream for u in record.users}
        self.app = Application(self.users, transactional, keyed)
        self.memory = MemoryCheckpointStore()
        self.store = FlakyStore(self.memory, rng, faults)
        self.poison = TimelineSink(self.app.timeline)
        self.store.timeline = self.app.timeline
        self.clock = Clock()
        self.processor = OrderedProcessor(
            self.app,
            checkpoints=self.store,
            poison=self.poison,
            max_attempts=max_attempts,
            safety_margin_ms=0,
            clock=self.clock,
            logger=QuietLogger(),
            keyed_state=keyed,
            max_concurrency=1,  # threads would make the seeded faults land differently
            model=model,
        )
        self.outcome = Outcome()
        self.max_invocations = 40 * len(stream) + 200

    # --- the ESM -------------------------------------------------------------------------

    def invoke(self, start: int, end: int, *, budget: bool = True) -> dict | None:
        """One invocation over stream[start:end]; None when the function raised."""
        self.outcome.invocations += 1
        assert self.outcome.invocations <= self.max_invocations, "a shard is stuck"
        records = [r.raw for r in self.stream[start:end]]
        context = None
        if budget and self.rng.random() < self.faults.budget_cut_rate:
            context = BudgetContext(self.rng.randint(0, max(0, 2 * (end - start))))
        try:
            return self.processor.process({"Records": records}, context)
        except CheckpointStoreUnavailable:
            return None

    def settle(self, start: int, end: int) -> None:
        """Lambda's handling of one batch until it succeeds or is given up."""
        retries = 0
        while start < end:
            response = self.invoke(start, end)
            if response is None:  # a function error
                if self.faults.bisect and end - start > 1:
                    middle = (start + end) // 2
                    self.settle(start, middle)
                    self.settle(middle, end)
                    return
                retries += 1
                if self._exhausted(retries):
                    self.outcome.on_failure.append(OnFailure(start, end, "Unhandled"))
                    return
                continue
            failures = response["batchItemFailures"]
            if not failures:
                self._maybe_deliver_again(start, end)
                return
            (failure,) = failures
            resume = self._index_of(failure["itemIdentifier"], start, end)
            retries += 1
            if self._exhausted(retries):
                self.outcome.on_failure.append(OnFailure(resume, end, None))
                return
            start = resume

    def _exhausted(self, retries: int) -> bool:
        limit = self.faults.max_retry_attempts
        return limit is not None and retries > limit

    def _index_of(self, sequence_number: str, start: int, end: int) -> int:
        for index in range(start, end):
            if self.stream[index].sequence_number == int(sequence_number):
                return index
        raise AssertionError(f"reported {sequence_number!r} is not in the batch")

    def _maybe_deliver_again(self, start: int, end: int) -> None:
        if self.rng.random() < self.faults.duplicate_rate:
            self.invoke(start, end)
        if start > 0 and self.rng.random() < self.faults.stale_rate:
            old_start = self.rng.randrange(0, start)
            self.invoke(old_start, self.rng.randint(old_start + 1, start))

    def drain(self) -> None:
        position = 0
        while position < len(self.stream):
            end = min(len(self.stream), position + self.rng.randint(1, self.faults.max_batch_size))
            self.settle(position, end)
            position = end
        self.outcome.drained = True

    def redeliver_everything(self) -> list[dict]:
        responses = []
        position = 0
        while position < len(self.stream):
            end = min(len(self.stream), position + self.rng.randint(1, self.faults.max_batch_size))
            responses.append(self.invoke(position, end, budget=False))
            position = end
        return responses

    # --- the user's replays --------------------------------------------------------------

    def replay_all(self) -> None:
        self.app.fixed = True
        self.store.enabled = False
        for user in self.users.values():
            user.failures_left = 0  # the outage behind the transient failures is over too
        for message in list(map(json.loads, self.poison.messages)):
            self._replay([poison_record(message)], None, message=message)
        for failure in self.outcome.on_failure:
            records = [r.raw for r in self.stream[failure.start : failure.end]]
            self._replay(records, failure)

    def _replay(self, records: list[dict], failure: OnFailure | None, message=None) -> None:
        response = self.processor.process({"Records": records, REPLAY_MARKER: True})
        report = response[REPLAY_MARKER]
        known = set(report["applied"]) | set(report["alreadyReplayed"])
        if failure is not None and failure.function_error is None:
            known |= set(report["appliedInOrder"]) | set(report["parked"])
        ids = self._record_ids(records, message)
        if ids.keys() <= known:
            self.outcome.deleted.update(ids.values())
            return
        self.outcome.kept.update(ids.values())
        self.outcome.kept_messages.append(
            Kept(
                message is not None,
                failure.function_error if failure else None,
                list(ids.values()),
                report,
            )
        )

    def _record_ids(self, records: list[dict], message) -> dict[str, Position]:
        if message is not None:
            position = (int(message["sequenceNumber"]), message["subSequenceNumber"])
            return {replay_record_id(message["sequenceNumber"], position[1]): position}
        ids = {}
        for raw in records:
            record = self._by_raw(raw)
            for user in record.users or [None]:
                position = user.position if user else (record.sequence_number, 0)
                ids[replay_record_id(str(position[0]), position[1])] = position
        return ids

    def _by_raw(self, raw: dict) -> StreamRecord:
        for record in self.stream:
            if record.raw is raw:
                return record
        raise AssertionError("not a stream record")

    # --- what happened -------------------------------------------------------------------

    def effects(self) -> list[tuple[str, Position, bool]]:
        """(key, position, replayed) of every effect, in the order it took effect."""
        if self.app.transactional:
            return [
                (e["Put"]["key"], e["Put"]["position"], e["Put"]["replay"])
                for e in self.memory.effects
            ]
        return list(self.app.plain_effects)

    def parked_counts(self) -> Counter:
        return Counter(
            (int(m["sequenceNumber"]), m["subSequenceNumber"])
            for m in map(json.loads, self.poison.messages)
        )


def poison_record(message: dict) -> dict:
    """A parked record rebuilt from its poison message, as scripts/replay.py rebuilds it."""
    if message["source"] == "kinesis":
        record = {
            "kinesis": {
                "partitionKey": message["partitionKey"],
                "sequenceNumber": message["sequenceNumber"],
                "data": message.get("data", ""),
            },
            "eventSource": "aws:kinesis",
            "eventID": f"{message['shardId']}:{message['sequenceNumber']}",
            "eventSourceARN": message["eventSourceARN"],
        }
        if message["subSequenceNumber"]:
            record["kinesis"][REPLAY_SUB_SEQUENCE_NUMBER] = message["subSequenceNumber"]
        return record
    stream_record = message["dynamodb"]
    if "NewImage" in stream_record and "OldImage" in stream_record:
        event_name = "MODIFY"
    elif "NewImage" in stream_record:
        event_name = "INSERT"
    else:
        event_name = "REMOVE"
    return {
        "eventName": event_name,
        "eventSource": "aws:dynamodb",
        "dynamodb": stream_record,
        "eventSourceARN": message["eventSourceARN"],
    }
