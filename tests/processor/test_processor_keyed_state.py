"""Keyed state: a fold per key, committed with the key's checkpoint once per batch.

Each rule of docs/architecture.md's keyed state, against the in-memory store (the DynamoDB
store's side is in test_processor_aws.py).
"""

from __future__ import annotations

import json
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processor import OrderedProcessor
from processor.checkpoint import CheckpointKey, MemoryCheckpointStore, StateWrite
from processor.contracts import REPLAY_MARKER
from processor.exceptions import CheckpointStoreUnavailable
from processor.ordering import MAX_EFFECTS_PER_COMMIT, NewState
from processor.poison import MemoryPoisonSink
from processor.testing import KINESIS_ARN, event, kinesis_record

SHARD = "shardId-000000000000"
CHILD = "shardId-000000000001"


def rec(key: str, seq: int, value: int = 1, shard: str = SHARD) -> dict:
    return kinesis_record(key, seq, {"key": key, "value": value}, shard_id=shard)


class Counter:
    """Sums each key's values; fails the sequence numbers it is told to (once, or always)."""

    def __init__(self, fail_once=(), fail_always=()):
        self.fail_once = set(fail_once)
        self.fail_always = set(fail_always)
        self.calls = 0

    def __call__(self, record, state):
        self.calls += 1
        seq = int(record.sequence_number)
        if seq in self.fail_always:
            raise RuntimeError(f"record {seq} always fails")
        if seq in self.fail_once:
            self.fail_once.discard(seq)
            raise RuntimeError(f"record {seq} fails once")
        state = state or {"total": 0, "seen": []}
        return {"total": state["total"] + record.json()["value"], "seen": [*state["seen"], seq]}


def make(fold, store=None, **options) -> OrderedProcessor:
    return OrderedProcessor(
        fold,
        checkpoints=store or MemoryCheckpointStore(),
        poison=MemoryPoisonSink(),
        keyed_state=True,
        **options,
    )


def seen(processor: OrderedProcessor, key: str) -> list[int]:
    state = processor.checkpoints.state_of(KINESIS_ARN, key)
    return state["seen"] if state else []


def test_each_key_folds_its_records_in_order_and_commits_once_per_batch():
    processor = make(Counter())
    batch = event(rec("a", 1, 2), rec("b", 2, 5), rec("a", 3, 4), rec("b", 4, 1), rec("a", 5, 1))

    response = processor.process(batch)

    assert response == {"batchItemFailures": []}
    assert processor.checkpoints.state_of(KINESIS_ARN, "a") == {"total": 7, "seen": [1, 3, 5]}
    assert processor.checkpoints.state_of(KINESIS_ARN, "b") == {"total": 6, "seen": [2, 4]}
    assert processor.checkpoints.stats.writes == 2  # one commit per key


def test_a_key_never_seen_has_no_state():
    assert MemoryCheckpointStore().state_of(KINESIS_ARN, "nobody") is None


def test_redelivered_records_are_skipped_and_the_state_is_unchanged():
    fold = Counter()
    processor = make(fold)
    batch = event(rec("a", 1), rec("a", 2))
    processor.process(batch)
    calls = fold.calls

    processor.process(event(*batch["Records"], rec("a", 3)))

    assert seen(processor, "a") == [1, 2, 3]
    assert fold.calls == calls + 1
    assert processor.last_result.duplicates == 2


def test_a_failure_mid_run_commits_the_state_after_the_last_good_record_and_blocks_the_rest():
    processor = make(Counter(fail_once={3}))
    batch = event(rec("a", 1), rec("a", 2), rec("b", 10), rec("a", 3), rec("a", 4))

    first = processor.process(batch)

    assert first == {"batchItemFailures": [{"itemIdentifier": "3"}]}
    assert seen(processor, "a") == [1, 2]
    assert seen(processor, "b") == [10]

    retry = processor.process(event(*batch["Records"][3:]))  # Lambda resumes at 3

    assert retry == {"batchItemFailures": []}
    assert seen(processor, "a") == [1, 2, 3, 4]


def test_a_poison_record_is_parked_after_max_attempts_and_its_key_goes_on():
    processor = make(Counter(fail_always={2}), max_attempts=2)
    batch = event(rec("a", 1), rec("a", 2), rec("a", 3))

    processor.process(batch)
    processor.process(event(*batch["Records"][1:]))

    (parked,) = map(json.loads, processor.poison.messages)
    assert parked["sequenceNumber"] == "2"
    assert parked["attempts"] == 2
    assert seen(processor, "a") == [1, 3]


def test_the_records_before_a_parked_one_commit_before_it_leaves_for_the_queue():
    class Recording(MemoryCheckpointStore):
        def __init__(self):
            super().__init__()
            self.log = []

        def commit_state(self, update, state, effects=()):
            super().commit_state(update, state, effects)
            self.log.append(("commit", json.loads(state.encoded)["seen"]))

    class Sink(MemoryPoisonSink):
        def park(self, message):
            super().park(message)
            store.log.append(("park", int(message["sequenceNumber"])))

    store = Recording()
    processor = OrderedProcessor(
        Counter(fail_always={2}), checkpoints=store, poison=Sink(), keyed_state=True, max_attempts=1
    )

    processor.process(event(rec("a", 1), rec("a", 2), rec("a", 3)))

    assert store.log == [("commit", [1]), ("park", 2), ("commit", [1, 3])]


def test_a_lost_condition_keeps_nothing_and_the_retry_folds_from_the_stored_state():
    store = MemoryCheckpointStore()
    fold = Counter()
    processor = make(fold, store)
    processor.process(event(rec("a", 1)))

    class Meddling(MemoryCheckpointStore):
        """Another invocation commits key a between this one's load and its commit."""

    original = store.commit_state

    def commit_after_another(update, state, effects=()):
        store.commit_state = original
        other = StateWrite(
            state.key, json.dumps({"total": 100, "seen": [99]}), state.expected_version
        )
        store.commit_state(type(update)(CheckpointKey(KINESIS_ARN, CHILD, "a"), (1, 0)), other, [])
        original(update, state, effects)

    store.commit_state = commit_after_another
    response = processor.process(event(rec("a", 2), rec("a", 3)))

    assert response == {"batchItemFailures": [{"itemIdentifier": "2"}]}
    assert store.state_of(KINESIS_ARN, "a") == {"total": 100, "seen": [99]}
    assert store.position(CheckpointKey(KINESIS_ARN, SHARD, "a")) == (1, 0)

    processor.process(event(rec("a", 2), rec("a", 3)))

    assert store.state_of(KINESIS_ARN, "a") == {"total": 102, "seen": [99, 2, 3]}


def test_the_state_belongs_to_the_key_not_the_shard_and_survives_a_reshard():
    processor = make(Counter())
    processor.process(event(rec("a", 1, shard=SHARD), rec("a", 2, shard=SHARD)))

    # The key's records move to a child shard, whose sequence numbers start anywhere.
    processor.process(event(rec("a", 1, shard=CHILD), rec("a", 7, shard=CHILD)))

    assert seen(processor, "a") == [1, 2, 1, 7]


def test_a_state_that_is_not_json_fails_the_record_and_is_parked():
    processor = make(lambda record, state: {"when": object()}, max_attempts=1)

    processor.process(event(rec("a", 1)))

    (parked,) = map(json.loads, processor.poison.messages)
    assert parked["error"]["type"] == "StateError"
    assert processor.checkpoints.state_of(KINESIS_ARN, "a") is None


def test_a_state_past_the_item_limit_is_a_clear_error():
    processor = make(lambda record, state: {"blob": "x" * 400_000}, max_attempts=1)

    processor.process(event(rec("a", 1)))

    (parked,) = map(json.loads, processor.poison.messages)
    assert "DynamoDB item" in parked["error"]["message"]


def test_effects_commit_with_the_state_split_into_transactions_of_at_most_100_items():
    store = MemoryCheckpointStore()
    commits = []
    original = store.commit_state

    def counting(update, state, effects=()):
        commits.append((update.position, len(effects)))
        original(update, state, effects)

    store.commit_state = counting

    def fold(record, state):
        seq = int(record.sequence_number)
        return NewState((state or 0) + 1, [{"Put": {"seq": seq, "i": i}} for i in range(40)])

    processor = make(fold, store)
    processor.process(event(*(rec("a", seq) for seq in range(1, 6))))

    assert all(2 + n <= 100 for _, n in commits)
    assert [position for position, _ in commits] == [(2, 0), (4, 0), (5, 0)]
    assert len(store.effects) == 200
    assert store.state_of(KINESIS_ARN, "a") == 5


def test_a_record_with_more_effects_than_a_transaction_holds_fails():
    processor = make(
        lambda record, state: NewState(1, [{}] * (MAX_EFFECTS_PER_COMMIT + 1)), max_attempts=1
    )

    processor.process(event(rec("a", 1)))

    (parked,) = map(json.loads, processor.poison.messages)
    assert f"at most {MAX_EFFECTS_PER_COMMIT}" in parked["error"]["message"]


def test_a_store_that_fails_at_the_commit_raises_and_moves_nothing_past_the_state():
    class CommitFails(MemoryCheckpointStore):
        def commit_state(self, update, state, effects=()):
            raise CheckpointStoreUnavailable("simulated")

    store = CommitFails()
    processor = make(Counter(), store)

    with pytest.raises(CheckpointStoreUnavailable):
        processor.process(event(rec("a", 1), rec("a", 2)))

    assert store.position(CheckpointKey(KINESIS_ARN, SHARD, "a")) is None
    assert store.state_of(KINESIS_ARN, "a") is None


def test_a_replayed_parked_record_folds_into_the_state_once():
    processor = make(Counter(fail_always={2}), max_attempts=1)
    processor.process(event(rec("a", 1), rec("a", 2), rec("a", 3)))
    processor.apply.fail_always.clear()  # the bug is fixed
    replay = {**event(rec("a", 2)), REPLAY_MARKER: True}

    first = processor.process(replay)
    second = processor.process(replay)

    assert first[REPLAY_MARKER]["applied"] == ["2"]
    assert second[REPLAY_MARKER]["alreadyReplayed"] == ["2"]
    assert seen(processor, "a") == [1, 3, 2]


def test_keys_run_side_by_side_and_each_keys_records_in_order():
    running = set()
    overlap = threading.Event()
    lock = threading.Lock()

    def fold(record, state):
        with lock:
            running.add(record.partition_key)
            if len(running) > 1:
                overlap.set()
        time.sleep(0.01)
        with lock:
            running.discard(record.partition_key)
        return [*(state or []), int(record.sequence_number)]

    processor = make(fold, max_concurrency=4)
    records = [rec(key, seq) for seq, key in enumerate("abcdabcdabcd", start=1)]

    processor.process(event(*records))

    assert overlap.is_set()
    for key, start in zip("abcd", range(1, 5), strict=True):
        assert processor.checkpoints.state_of(KINESIS_ARN, key) == [start, start + 4, start + 8]


def test_max_concurrency_must_be_at_least_one():
    with pytest.raises(ValueError, match="max_concurrency"):
        make(Counter(), max_concurrency=0)


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(
    st.lists(
        st.tuples(st.sampled_from("abcde"), st.sampled_from(["ok", "ok", "once", "always"])),
        min_size=1,
        max_size=30,
    ),
    st.integers(1, 3),
    st.booleans(),
)
def test_keys_in_parallel_settle_exactly_as_one_key_at_a_time(records, max_attempts, keyed):
    """The response, the stored positions, the parked records and every key's effects are
    the same with 8 threads as with one, through retries until the batch drains."""

    def run(concurrency: int):
        fail_once = {i for i, (_, kind) in enumerate(records, 1) if kind == "once"}
        fail_always = {i for i, (_, kind) in enumerate(records, 1) if kind == "always"}
        counter = Counter(fail_once, fail_always)
        applied: list[tuple[str, int]] = []
        lock = threading.Lock()

        def apply(record):
            counter(record, None)
            with lock:
                applied.append((record.partition_key, int(record.sequence_number)))

        fold = counter if keyed else apply
        processor = OrderedProcessor(
            fold,
            checkpoints=MemoryCheckpointStore(),
            poison=MemoryPoisonSink(),
            max_attempts=max_attempts,
            keyed_state=keyed,
            max_concurrency=concurrency,
        )
        raw = [rec(key, i) for i, (key, _) in enumerate(records, 1)]
        responses = []
        start = 0
        for _ in range(4 * len(raw)):
            response = processor.process(event(*raw[start:]))
            responses.append(response)
            if not response["batchItemFailures"]:
                break
            resume = response["batchItemFailures"][0]["itemIdentifier"]
            start = next(i for i, r in enumerate(raw) if r["kinesis"]["sequenceNumber"] == resume)
        keys = sorted({key for key, _ in records})
        if keyed:
            effects = {k: processor.checkpoints.state_of(KINESIS_ARN, k) for k in keys}
        else:
            effects = {k: [seq for key, seq in applied if key == k] for k in keys}
        positions = {
            k: processor.checkpoints.position(CheckpointKey(KINESIS_ARN, SHARD, k)) for k in keys
        }
        parked = sorted(json.loads(m)["sequenceNumber"] for m in processor.poison.messages)
        return responses, effects, positions, parked

    assert run(8) == run(1)


def test_near_the_deadline_the_rest_is_left_and_what_ran_is_committed():
    class Clock:
        """Each reading is a millisecond later: the budget runs out after a few records."""

        now = 0.0

        def __call__(self):
            self.now += 0.001
            return self.now

    class Context:
        def get_remaining_time_in_millis(self):
            return 4

    processor = make(Counter(), clock=Clock(), safety_margin_ms=0)
    batch = event(*(rec("a", seq) for seq in range(1, 9)))

    response = processor.process(batch, Context())

    resume = int(response["batchItemFailures"][0]["itemIdentifier"])
    assert seen(processor, "a") == list(range(1, resume))
    assert processor.last_result.unprocessed == 9 - resume
