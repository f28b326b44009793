"""Redelivery: what Lambda sends again after a partial failure must change nothing twice.

Regression tests for the losses and duplicates of the correctness issue, each named after
the rule it broke, plus the record of what a batch left unapplied (the replay's evidence).
"""

from __future__ import annotations

import json

from processor import OrderedProcessor
from processor.checkpoint import CheckpointKey, MemoryCheckpointStore
from processor.contracts import REPLAY_MARKER
from processor.poison import MemoryPoisonSink
from processor.testing import DYNAMODB_ARN, KINESIS_ARN, dynamodb_record, event, kinesis_record
from processor.testing import kinesis_record_raw as raw_record

SHARD = "shardId-000000000000"


class Ledger:
    """Applies every record it is given, except the positions it is told to fail (once each,
    or always)."""

    def __init__(self, fail_once=(), fail_always=()):
        self.fail_once = set(fail_once)
        self.fail_always = set(fail_always)
        self.applied: list[tuple[str, str]] = []

    def __call__(self, record):
        record.data  # noqa: B018 (a handler reads its data: bad base64 shows here)
        if record.sequence_number in self.fail_always:
            raise RuntimeError(f"record {record.sequence_number} always fails")
        if record.sequence_number in self.fail_once:
            self.fail_once.discard(record.sequence_number)
            raise RuntimeError(f"record {record.sequence_number} fails once")
        self.applied.append((record.partition_key, record.sequence_number))


def make(apply, max_attempts: int = 3) -> OrderedProcessor:
    return OrderedProcessor(
        apply,
        checkpoints=MemoryCheckpointStore(),
        poison=MemoryPoisonSink(),
        max_attempts=max_attempts,
    )


def rec(key: str, seq: int) -> dict:
    return kinesis_record(key, seq, {"key": key, "seq": seq})


def test_unparseable_record_obeys_dedup_on_redelivery():
    # A@10 fails once, K@11 cannot be parsed, K@12 is fine: Lambda resumes at 10.
    ledger = Ledger(fail_once={"10"})
    processor = make(ledger)
    batch = event(rec("A", 10), raw_record("K", 11, "not base64!"), rec("K", 12))

    first = processor.process(batch)
    retry = processor.process(event(*batch["Records"]))

    assert first["batchItemFailures"] == [{"itemIdentifier": "10"}]
    assert retry["batchItemFailures"] == []
    assert len(processor.poison.messages) == 1  # parked once, not on every redelivery
    assert ledger.applied == [("K", "12"), ("A", "10")]  # K@12 applied once


def test_parking_never_moves_a_position_back():
    store = MemoryCheckpointStore()
    processor = OrderedProcessor(Ledger(), checkpoints=store, poison=MemoryPoisonSink())
    processor.process(event(rec("K", 12)))

    processor.process(event(raw_record("K", 11, "not base64!")))  # a stale redelivery

    assert store.position(CheckpointKey(KINESIS_ARN, SHARD, "K")) == (12, 0)
    assert processor.poison.messages == []


def test_unparseable_record_waits_behind_an_earlier_failure_of_its_key():
    ledger = Ledger(fail_once={"10"})
    processor = make(ledger)

    response = processor.process(event(rec("K", 10), raw_record("K", 11, "not base64!")))

    assert response["batchItemFailures"] == [{"itemIdentifier": "10"}]
    assert processor.poison.messages == []  # blocked, not parked ahead of record 10
    processor.process(event(rec("K", 10), raw_record("K", 11, "not base64!")))
    assert len(processor.poison.messages) == 1


def _item(seq: int, *, event_name="MODIFY", new_image=None) -> dict:
    return dynamodb_record(
        {"pk": "a"}, seq, event_name=event_name, new_image=new_image or {"pk": "a", "n": seq}
    )


def test_malformed_dynamodb_image_is_keyed_like_its_items_other_records():
    ledger = Ledger(fail_once={"100"})
    processor = make(ledger)
    broken = _item(101)
    broken["dynamodb"]["NewImage"] = {"pk": {"S": "a"}, "n": {"BOGUS": "1"}}
    batch = event(_item(100, event_name="INSERT"), broken)

    first = processor.process(batch)
    assert processor.poison.messages == []  # held behind record 100 of the same item
    retry = processor.process(event(*batch["Records"]))
    again = processor.process(event(*batch["Records"]))

    assert first["batchItemFailures"] == [{"itemIdentifier": "100"}]
    assert retry["batchItemFailures"] == again["batchItemFailures"] == []
    (parked,) = map(json.loads, processor.poison.messages)  # parked once
    assert parked["partitionKey"] == '{"pk":"a"}'
    assert parked["sequenceNumber"] == "101"


def test_dynamodb_binary_attributes_are_applied_as_bytes():
    seen = []
    processor = make(seen.append)
    record = dynamodb_record({"id": b"\x00\x01"}, 7, new_image={"id": b"\x00\x01", "tags": {b"x"}})

    processor.process(event(record))

    assert processor.poison.messages == []
    (applied,) = seen
    assert applied.keys == {"id": b"\x00\x01"}
    assert applied.new_image["tags"] == {b"x"}
    assert applied.partition_key == '{"id":"AAE="}'


def test_dynamodb_binary_attribute_that_is_not_base64_is_a_parse_error():
    processor = make(Ledger())
    record = dynamodb_record({"pk": "a"}, 7, new_image={"pk": "a"})
    record["dynamodb"]["NewImage"]["blob"] = {"B": "not base64!"}

    processor.process(event(record))

    (parked,) = map(json.loads, processor.poison.messages)
    assert parked["error"]["type"] == "RecordParseError"
    assert parked["partitionKey"] == '{"pk":"a"}'
    assert parked["eventSourceARN"] == DYNAMODB_ARN


# --- what a batch left unapplied, and what a replay may do with it ---------------------


def _replay(*records: dict) -> dict:
    return {**event(*records), REPLAY_MARKER: True}


def test_records_the_esm_gave_up_on_are_applied_by_a_replay_after_the_key_moved_on():
    # Key K: record 10 fails, 11 is blocked behind it; the ESM gives up (its retries ran
    # out before the processor's), then K's later record 20 applies.
    ledger = Ledger(fail_always={"10"})
    processor = make(ledger, max_attempts=5)
    processor.process(event(rec("K", 10), rec("K", 11), rec("J", 12)))
    processor.process(event(rec("K", 20)))
    ledger.fail_always.clear()

    response = processor.process(_replay(rec("K", 10), rec("K", 11), rec("J", 12)))

    report = response[REPLAY_MARKER]
    assert report["applied"] == ["10", "11"]
    assert report["appliedInOrder"] == ["12"]
    assert ledger.applied == [("J", "12"), ("K", "20"), ("K", "10"), ("K", "11")]


def test_a_replayed_record_is_never_applied_twice():
    ledger = Ledger(fail_always={"10"})
    processor = make(ledger, max_attempts=5)
    processor.process(event(rec("K", 10)))
    processor.process(event(rec("K", 20)))
    ledger.fail_always.clear()

    processor.process(_replay(rec("K", 10)))
    second = processor.process(_replay(rec("K", 10)))

    assert second[REPLAY_MARKER]["alreadyReplayed"] == ["10"]
    assert ledger.applied == [("K", "20"), ("K", "10")]


def test_a_record_replayed_before_the_stream_reaches_it_is_not_applied_again():
    ledger = Ledger(fail_once={"10"})
    processor = make(ledger)
    processor.process(event(rec("K", 10), rec("K", 11)))  # 10 fails, 11 blocked

    processor.process(_replay(rec("K", 11)))  # the user replays 11 while Lambda retries
    processor.process(event(rec("K", 10), rec("K", 11), rec("K", 12)))

    assert ledger.applied == [("K", "11"), ("K", "10"), ("K", "12")]


def test_a_replay_never_moves_the_checkpoint():
    store = MemoryCheckpointStore()
    ledger = Ledger()
    processor = OrderedProcessor(ledger, checkpoints=store, poison=MemoryPoisonSink())
    processor.process(event(rec("K", 5)))

    processor.process(_replay(rec("K", 9)))  # ahead of the key: the stream has 7 and 8 to come
    processor.process(event(rec("K", 7), rec("K", 8), rec("K", 9)))

    assert ledger.applied == [("K", "5"), ("K", "9"), ("K", "7"), ("K", "8")]
    assert store.position(CheckpointKey(KINESIS_ARN, SHARD, "K")) == (9, 0)


def test_records_cut_by_the_time_budget_are_unsettled_until_applied():
    store = MemoryCheckpointStore()
    processor = OrderedProcessor(Ledger(), checkpoints=store, poison=MemoryPoisonSink())

    class Expired:
        def get_remaining_time_in_millis(self):
            return 0

    processor.process(event(rec("K", 10), rec("K", 11)), Expired())

    key = CheckpointKey(KINESIS_ARN, SHARD, "K")
    assert store.load([key])[key].unsettled == {(10, 0), (11, 0)}
    processor.process(event(rec("K", 10), rec("K", 11)))
    assert store.load([key])[key].unsettled == frozenset()


class FlushFailsOnce(MemoryCheckpointStore):
    """A store whose first batch flush is lost (the writes made before it land)."""

    def __init__(self):
        super().__init__()
        self.flushes = 0

    def save(self, updates):
        if any(u.position is not None for u in updates):
            self.flushes += 1
            if self.flushes == 1:
                from processor.exceptions import CheckpointStoreUnavailable

                raise CheckpointStoreUnavailable("simulated: the flush is lost")
        super().save(updates)


def test_a_record_parked_then_applied_after_a_lost_flush_is_not_applied_again_by_replay():
    import pytest

    from processor.exceptions import CheckpointStoreUnavailable

    ledger = Ledger(fail_once={"10"})
    store = FlushFailsOnce()
    processor = OrderedProcessor(
        ledger, checkpoints=store, poison=MemoryPoisonSink(), max_attempts=1
    )
    with pytest.raises(CheckpointStoreUnavailable):
        processor.process(event(rec("K", 10)))  # parked, then the flush is lost
    processor.process(event(rec("K", 10)))  # Lambda retries; now it applies
    (parked,) = map(json.loads, processor.poison.messages)

    response = processor.process(_replay(rec("K", 10)))

    assert parked["sequenceNumber"] == "10"
    assert response[REPLAY_MARKER]["alreadyReplayed"] == ["10"]
    assert ledger.applied == [("K", "10")]


def test_the_store_knows_a_record_is_parked_before_the_queue_does():
    class Unreachable(MemoryPoisonSink):
        def park(self, message):
            from processor.exceptions import PoisonSinkUnavailable

            raise PoisonSinkUnavailable("simulated")

    import pytest

    from processor.exceptions import PoisonSinkUnavailable

    store = MemoryCheckpointStore()
    processor = OrderedProcessor(
        Ledger(fail_always={"10"}), checkpoints=store, poison=Unreachable(), max_attempts=1
    )
    key = CheckpointKey(KINESIS_ARN, SHARD, "K")

    with pytest.raises(PoisonSinkUnavailable):
        processor.process(event(rec("K", 10)))

    assert store.load([key])[key].parked == {(10, 0)}
    assert store.position(key) is None  # not done: Lambda retries it


def test_a_failed_transaction_leaves_its_record_unsettled():
    import pytest

    from processor.exceptions import CheckpointStoreUnavailable

    class CommitFailsOnce(MemoryCheckpointStore):
        failed = False

        def commit_with_effects(self, update, effects):
            if not self.failed:
                self.failed = True
                raise CheckpointStoreUnavailable("simulated: the transaction is not sent")
            super().commit_with_effects(update, effects)

    store = CommitFailsOnce()
    store.failed = True  # the first batch commits normally
    ledger = Ledger(fail_once={"10"})

    def effects(record):
        ledger(record)
        return [{"Put": {"seq": record.sequence_number}}]

    processor = OrderedProcessor(effects, checkpoints=store, poison=MemoryPoisonSink())
    processor.process(event(rec("K", 10), rec("K", 11)))  # 10 fails, 11 waits: both unsettled
    store.failed = False

    with pytest.raises(CheckpointStoreUnavailable):
        processor.process(event(rec("K", 10), rec("K", 11)))  # 10's transaction is not sent

    key = CheckpointKey(KINESIS_ARN, SHARD, "K")
    assert store.load([key])[key].unsettled == {(10, 0), (11, 0)}
    assert store.effects == []


def test_an_unparseable_record_counts_as_parked_only_once_it_is_on_the_queue():
    # K@10 cannot be parsed and the poison queue is unreachable: the batch raises, the ESM
    # gives up on it and sends it to the on-failure queue. Replaying that message must not
    # take the record for one already parked (nothing can apply it, and it is on no queue):
    # the report calls it unparseable, and the replay tool keeps the message.
    import pytest

    from processor.exceptions import PoisonSinkUnavailable

    class Unreachable(MemoryPoisonSink):
        def park(self, message):
            raise PoisonSinkUnavailable("simulated")

    store = MemoryCheckpointStore()
    processor = OrderedProcessor(Ledger(), checkpoints=store, poison=Unreachable())
    bad = raw_record("K", 10, "not base64!")
    with pytest.raises(PoisonSinkUnavailable):
        processor.process(event(bad))

    key = CheckpointKey(KINESIS_ARN, SHARD, "K")
    report = processor.process(_replay(bad))[REPLAY_MARKER]

    state = store.load([key]).get(key)
    assert state is None or not state.parked
    assert report["parked"] == []
    assert report["unparseable"] == ["10"]
