"""OrderedProcessor inside one invocation: the rules docs/architecture.md gives `processor/`."""

from __future__ import annotations

import base64
import json
import time

import pytest

from processor import OrderedProcessor
from processor.checkpoint import CheckpointKey, MemoryCheckpointStore
from processor.ordering import default_safety_margin_ms
from processor.poison import MemoryPoisonSink
from processor.testing import (
    KINESIS_ARN,
    dynamodb_record,
    event,
    kinesis_record,
    kpl_aggregate,
    lambda_context,
)

SHARD = "shardId-000000000000"


class Ledger:
    """A record handler that remembers what it applied and fails on command."""

    def __init__(self, fail_on: set[tuple[str, int]] = frozenset()):
        self.applied: list[tuple[str, int]] = []
        self.fail_on = set(fail_on)

    def __call__(self, record):
        body = record.json()
        item = (record.partition_key, body["n"])
        if item in self.fail_on:
            raise RuntimeError(f"cannot apply {item}")
        self.applied.append(item)


def rec(key: str, seq: int | str, n: int, **extra) -> dict:
    return kinesis_record(key, seq, {"key": key, "n": n, **extra})


def make(apply, max_attempts: int = 3, **kwargs) -> OrderedProcessor:
    return OrderedProcessor(
        apply,
        checkpoints=MemoryCheckpointStore(),
        poison=MemoryPoisonSink(),
        max_attempts=max_attempts,
        **kwargs,
    )


def test_records_are_applied_in_the_order_given():
    ledger = Ledger()
    processor = make(ledger)

    response = processor.process(event(rec("a", 1, 1), rec("b", 2, 1), rec("a", 3, 2)))

    assert response == {"batchItemFailures": []}
    assert ledger.applied == [("a", 1), ("b", 1), ("a", 2)]


def test_sequence_numbers_compare_as_integers_not_strings():
    # "10" < "9" as strings; as integers 10 comes after 9 and is not a duplicate.
    ledger = Ledger()
    processor = make(ledger)
    processor.process(event(rec("a", 9, 1)))

    processor.process(event(rec("a", 10, 2)))

    assert ledger.applied == [("a", 1), ("a", 2)]


def test_record_at_or_below_the_checkpoint_is_skipped_as_a_duplicate():
    ledger = Ledger()
    processor = make(ledger)
    processor.process(event(rec("a", 5, 1)))

    result = processor.process_batch(event(rec("a", 4, 0), rec("a", 5, 1), rec("a", 6, 2)))

    assert ledger.applied == [("a", 1), ("a", 2)]
    assert result.duplicates == 2


def test_failure_blocks_later_records_of_its_key_only():
    ledger = Ledger(fail_on={("a", 1)})
    processor = make(ledger)

    result = processor.process_batch(
        event(rec("a", 1, 1), rec("b", 2, 1), rec("a", 3, 2), rec("b", 4, 2))
    )

    assert ledger.applied == [("b", 1), ("b", 2)]
    assert (result.failed, result.blocked, result.applied) == (1, 1, 2)


def test_lowest_failed_sequence_number_is_the_single_resume_point():
    ledger = Ledger(fail_on={("b", 1), ("a", 2)})
    processor = make(ledger)

    response = processor.process(
        event(rec("a", 100, 1), rec("b", 200, 1), rec("a", 300, 2), rec("c", 400, 1))
    )

    assert response == {"batchItemFailures": [{"itemIdentifier": "200"}]}


def test_retry_skips_the_records_that_already_succeeded():
    ledger = Ledger(fail_on={("a", 1)})
    processor = make(ledger)
    batch = event(rec("a", 1, 1), rec("b", 2, 1), rec("b", 3, 2))
    processor.process(batch)
    ledger.fail_on.clear()

    result = processor.process_batch(batch)

    assert ledger.applied == [("b", 1), ("b", 2), ("a", 1)]
    assert (result.applied, result.duplicates) == (1, 2)


def test_record_is_parked_with_its_payload_after_max_attempts_and_its_key_goes_on():
    ledger = Ledger(fail_on={("a", 1)})
    processor = make(ledger, max_attempts=3)
    batch = event(rec("a", 1, 1), rec("a", 2, 2))

    responses = [processor.process(batch) for _ in range(3)]

    assert responses[:2] == [{"batchItemFailures": [{"itemIdentifier": "1"}]}] * 2
    assert responses[2] == {"batchItemFailures": []}
    assert ledger.applied == [("a", 2)]
    (body,) = processor.poison.messages
    message = json.loads(body)
    assert message["attempts"] == 3
    assert json.loads(base64.b64decode(message["data"])) == {"key": "a", "n": 1}
    assert message["error"]["type"] == "RuntimeError"
    assert "cannot apply" in message["error"]["message"]
    assert "Traceback" in message["error"]["traceback"]
    assert (message["shardId"], message["partitionKey"], message["sequenceNumber"]) == (
        SHARD,
        "a",
        "1",
    )


def test_attempts_are_counted_per_record_not_per_key():
    ledger = Ledger(fail_on={("a", 1)})
    processor = make(ledger, max_attempts=2)
    processor.process(event(rec("a", 1, 1)))  # attempt 1 of record 1
    ledger.fail_on = {("a", 2)}
    ledger.applied.clear()

    response = processor.process(event(rec("a", 1, 1), rec("a", 2, 2)))

    # record 1 now succeeds; record 2 fails for the first time: nothing is parked.
    assert ledger.applied == [("a", 1)]
    assert response == {"batchItemFailures": [{"itemIdentifier": "2"}]}
    assert processor.poison.messages == []


def test_unparseable_record_is_parked_at_once_and_the_batch_goes_on():
    ledger = Ledger()
    processor = make(ledger, max_attempts=5)
    broken = kinesis_record("a", 2, b"")
    broken["kinesis"]["data"] = "%%%"

    response = processor.process(event(rec("a", 1, 1), broken, rec("a", 3, 3)))

    assert response == {"batchItemFailures": []}
    assert ledger.applied == [("a", 1), ("a", 3)]
    (message,) = map(json.loads, processor.poison.messages)
    assert message["attempts"] == 1
    assert message["error"]["type"] == "RecordParseError"
    assert message["data"] == "%%%"  # exactly what arrived


def test_failing_kpl_sub_record_reports_its_aggregate_and_the_retry_resumes_inside_it():
    users = [("a", b'{"n": 1}'), ("b", b'{"n": 1}'), ("a", b'{"n": 2}')]
    batch = event(kinesis_record("x", 700, kpl_aggregate(users)))
    ledger = Ledger(fail_on={("b", 1)})
    processor = make(ledger)

    assert processor.process(batch) == {"batchItemFailures": [{"itemIdentifier": "700"}]}
    ledger.fail_on.clear()
    processor.process(batch)

    assert ledger.applied == [("a", 1), ("a", 2), ("b", 1)]


def test_time_budget_stops_taking_records_and_reports_the_first_unprocessed():
    def slow(record):
        time.sleep(0.05)

    processor = make(slow, safety_margin_ms=100)
    context = lambda_context(timeout_ms=300)
    batch = event(*[rec(f"k{i}", i + 1, 1) for i in range(20)])

    started = time.monotonic()
    result = processor.process_batch(batch, context)
    elapsed_ms = (time.monotonic() - started) * 1000

    assert elapsed_ms < 300 - 50  # returned before the deadline
    assert 0 < result.applied < 20
    assert result.unprocessed == 20 - result.applied
    assert result.response == {"batchItemFailures": [{"itemIdentifier": str(result.applied + 1)}]}


def test_default_safety_margin_leaves_most_of_a_short_invocation_for_work():
    assert default_safety_margin_ms(3000) <= 300
    assert default_safety_margin_ms(900_000) <= 10_000
    assert default_safety_margin_ms(100) >= 100  # never zero


def test_record_level_failures_never_escape():
    def explode(record):
        raise KeyError("boom")

    processor = make(explode)
    response = processor.process(event(rec("a", 1, 1)))
    assert response == {"batchItemFailures": [{"itemIdentifier": "1"}]}


def test_at_most_one_checkpoint_write_per_key_per_batch():
    store = MemoryCheckpointStore()
    processor = OrderedProcessor(Ledger(), checkpoints=store, poison=MemoryPoisonSink())
    batch = event(*[rec(f"k{i % 10}", i + 1, i) for i in range(200)])

    processor.process(batch)

    assert store.stats.writes == 10


def test_checkpoints_are_kept_per_shard():
    ledger = Ledger()
    processor = make(ledger)
    processor.process(event(kinesis_record("a", 9, {"n": 1}, shard_id="shardId-000000000001")))

    # The same key and a lower sequence number on another shard is not a duplicate.
    processor.process(event(kinesis_record("a", 5, {"n": 2}, shard_id="shardId-000000000002")))

    assert ledger.applied == [("a", 1), ("a", 2)]


def test_dynamodb_records_are_ordered_per_item_key():
    seen = []

    def apply(record):
        if record.new_image and record.new_image.get("bad"):
            raise ValueError("bad image")
        seen.append((record.keys["pk"], record.sequence_number))

    processor = make(apply)
    batch = event(
        dynamodb_record({"pk": "x"}, 10, new_image={"pk": "x", "bad": True}),
        dynamodb_record({"pk": "y"}, 11, new_image={"pk": "y"}),
        dynamodb_record({"pk": "x"}, 12, new_image={"pk": "x"}),
    )

    response = processor.process(batch)

    assert seen == [("y", "11")]
    assert response == {"batchItemFailures": [{"itemIdentifier": "10"}]}


def test_transaction_items_are_committed_with_the_checkpoint_once():
    store = MemoryCheckpointStore()

    def apply(record):
        return [{"Put": {"TableName": "sink", "Item": {"pk": {"S": record.partition_key}}}}]

    processor = OrderedProcessor(apply, checkpoints=store, poison=MemoryPoisonSink())
    batch = event(rec("a", 1, 1), rec("a", 2, 2))
    processor.process(batch)
    result = processor.process_batch(batch)

    assert len(store.effects) == 2
    assert result.duplicates == 2
    assert store.position(CheckpointKey(KINESIS_ARN, SHARD, "a")) == (2, 0)


@pytest.mark.parametrize("max_attempts", [0, -1])
def test_max_attempts_must_be_positive(max_attempts):
    with pytest.raises(ValueError, match="max_attempts"):
        make(Ledger(), max_attempts=max_attempts)
