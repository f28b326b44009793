"""Replaying parked records: events marked with REPLAY_MARKER (scripts/replay.py sets it)."""

from __future__ import annotations

import json

import pytest

from processor import OrderedProcessor
from processor.checkpoint import DynamoDBCheckpointStore, MemoryCheckpointStore
from processor.contracts import REPLAY_MARKER
from processor.poison import MemoryPoisonSink
from processor.testing import event, kinesis_record


class Switchable:
    """Fails the records named in `failing`; returns transaction items when asked to."""

    def __init__(self, failing=(), table: str | None = None):
        self.failing = set(failing)
        self.applied: list[int] = []
        self.table = table

    def __call__(self, record):
        n = record.json()["n"]
        if n in self.failing:
            raise ValueError(f"n={n} fails")
        self.applied.append(n)
        if self.table:
            return [
                {
                    "Put": {
                        "TableName": self.table,
                        "Item": {"pk": {"S": f"{record.partition_key}#{n}"}},
                    }
                }
            ]
        return None


def rec(seq: int, n: int, key: str = "a") -> dict:
    return kinesis_record(key, seq, {"n": n})


def replay(*records: dict) -> dict:
    return {**event(*records), REPLAY_MARKER: True}


def parked_then_fixed(store, handler) -> OrderedProcessor:
    """Given record n=2 was parked (max_attempts=1) and the bug behind it is fixed."""
    processor = OrderedProcessor(
        handler, checkpoints=store, poison=MemoryPoisonSink(), max_attempts=1
    )
    processor.process(event(rec(1, 1), rec(2, 2), rec(3, 3)))
    assert len(processor.poison.messages) == 1
    handler.failing.clear()
    handler.applied.clear()
    return processor


def test_replayed_parked_record_is_applied_once():
    handler = Switchable(failing={2})
    processor = parked_then_fixed(MemoryCheckpointStore(), handler)

    first = processor.process(replay(rec(2, 2)))
    second = processor.process(replay(rec(2, 2)))

    assert first["batchItemFailures"] == second["batchItemFailures"] == []
    assert first[REPLAY_MARKER]["applied"] == ["2"]
    assert second[REPLAY_MARKER]["alreadyReplayed"] == ["2"]
    assert handler.applied == [2]
    assert processor.last_result.duplicates == 1


def test_replay_skips_records_that_were_applied():
    handler = Switchable(failing={2})
    processor = parked_then_fixed(MemoryCheckpointStore(), handler)

    processor.process(replay(rec(1, 1), rec(2, 2), rec(3, 3)))

    assert handler.applied == [2]


def test_replayed_record_that_fails_again_is_reported_not_parked_again():
    handler = Switchable(failing={2})
    processor = parked_then_fixed(MemoryCheckpointStore(), handler)
    handler.failing = {2}

    response = processor.process(replay(rec(2, 2)))

    assert response["batchItemFailures"] == [{"itemIdentifier": "2"}]
    assert response[REPLAY_MARKER]["failed"] == ["2"]
    assert len(processor.poison.messages) == 1  # still only the original parking
    handler.failing.clear()
    assert processor.process(replay(rec(2, 2)))["batchItemFailures"] == []
    assert handler.applied == [2]


def test_a_replay_never_moves_the_checkpoint_back():
    handler = Switchable(failing={2})
    store = MemoryCheckpointStore()
    processor = parked_then_fixed(store, handler)

    processor.process(replay(rec(2, 2)))
    processor.process(event(rec(3, 3)))  # the live stream redelivers: still a duplicate

    assert handler.applied == [2]


@pytest.mark.integration
def test_transactional_replay_commits_its_effect_exactly_once(aws_session, new_table, unique_name):
    dynamodb = aws_session.client("dynamodb")
    store = DynamoDBCheckpointStore(new_table(f"ckpt-{unique_name}"), boto3_client=dynamodb)
    sink = new_table(f"sink-{unique_name}")
    handler = Switchable(failing={2}, table=sink)
    processor = parked_then_fixed(store, handler)

    processor.process(replay(rec(2, 2)))
    processor.process(replay(rec(2, 2)))
    processor.process(event(rec(1, 1), rec(2, 2), rec(3, 3)))  # live redelivery

    items = dynamodb.scan(TableName=sink)["Items"]
    assert sorted(item["pk"]["S"] for item in items) == ["a#1", "a#2", "a#3"]
    assert handler.applied == [2]
    assert processor.last_result.duplicates == 3
    (parked,) = map(json.loads, processor.poison.messages)
    assert parked["sequenceNumber"] == "2"


@pytest.mark.integration
def test_two_concurrent_replays_of_one_parked_record_commit_once(
    aws_session, new_table, unique_name
):
    from processor.checkpoint import CheckpointKey, CheckpointUpdate
    from processor.exceptions import StaleCheckpointError
    from processor.testing import KINESIS_ARN

    dynamodb = aws_session.client("dynamodb")
    store = DynamoDBCheckpointStore(new_table(f"ckpt-{unique_name}"), boto3_client=dynamodb)
    sink = new_table(f"sink-{unique_name}")
    key = CheckpointKey(KINESIS_ARN, "shardId-000000000000", "a")
    store.save([CheckpointUpdate(key, (2, 0), parked=((2, 0),))])
    # Both replays read the record as parked before either commits.
    assert store.load([key])[key].parked == {(2, 0)}
    replayed = CheckpointUpdate(
        key, None, replayed=((2, 0),), leaves_parked=((2, 0),), touch_failure=False
    )

    def effect(value: str) -> list[dict]:
        return [{"Put": {"TableName": sink, "Item": {"pk": {"S": value}}}}]

    store.commit_with_effects(replayed, effect("first"))
    with pytest.raises(StaleCheckpointError):
        store.commit_with_effects(replayed, effect("second"))

    assert [i["pk"]["S"] for i in dynamodb.scan(TableName=sink)["Items"]] == ["first"]
    assert store.load([key])[key].parked == frozenset()


def test_replayed_kpl_sub_record_keeps_its_position_and_is_applied():
    from processor.contracts import REPLAY_SUB_SEQUENCE_NUMBER
    from processor.testing import kpl_aggregate

    # One aggregate at sequence number 7: sub-record 0 applies, sub-record 1 is parked.
    handler = Switchable(failing={2})
    processor = OrderedProcessor(
        handler, checkpoints=MemoryCheckpointStore(), poison=MemoryPoisonSink(), max_attempts=1
    )
    aggregate = kpl_aggregate([("a", b'{"n": 1}'), ("a", b'{"n": 2}')])
    processor.process(event(kinesis_record("a", 7, aggregate)))
    (parked,) = map(json.loads, processor.poison.messages)
    assert parked["subSequenceNumber"] == 1
    handler.failing.clear()
    # The replay tool re-drives the parked user record alone, with its sub-sequence number.
    record = kinesis_record("a", 7, b'{"n": 2}')
    record["kinesis"][REPLAY_SUB_SEQUENCE_NUMBER] = 1

    response = processor.process(replay(record))

    assert response[REPLAY_MARKER]["applied"] == ["7:1"]
    assert handler.applied == [1, 2]


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(-1, id="negative"),
        pytest.param("1", id="string"),
        pytest.param(True, id="bool"),
    ],
)
def test_a_bad_sub_sequence_number_from_a_replay_tool_is_a_parse_error(value):
    from processor.contracts import REPLAY_SUB_SEQUENCE_NUMBER
    from processor.records import Unparseable, parse_event

    record = kinesis_record("a", 7, b'{"n": 2}')
    record["kinesis"][REPLAY_SUB_SEQUENCE_NUMBER] = value

    (item,) = parse_event(event(record))

    assert type(item) is Unparseable
    assert REPLAY_SUB_SEQUENCE_NUMBER in str(item.error)


@pytest.mark.integration
def test_records_the_esm_gave_up_on_replay_exactly_once_through_dynamodb(
    aws_session, new_table, unique_name
):
    dynamodb = aws_session.client("dynamodb")
    store = DynamoDBCheckpointStore(new_table(f"ckpt-{unique_name}"), boto3_client=dynamodb)
    sink = new_table(f"sink-{unique_name}")
    handler = Switchable(failing={1}, table=sink)
    processor = OrderedProcessor(
        handler, checkpoints=store, poison=MemoryPoisonSink(), max_attempts=5
    )
    # n=1 fails and n=2 waits behind it; the ESM gives up, then n=3 applies.
    processor.process(event(rec(1, 1), rec(2, 2)))
    processor.process(event(rec(3, 3)))
    handler.failing.clear()

    first = processor.process(replay(rec(1, 1), rec(2, 2)))
    second = processor.process(replay(rec(1, 1), rec(2, 2)))

    assert first[REPLAY_MARKER]["applied"] == ["1", "2"]
    assert second[REPLAY_MARKER]["alreadyReplayed"] == ["1", "2"]
    items = dynamodb.scan(TableName=sink)["Items"]
    assert sorted(item["pk"]["S"] for item in items) == ["a#1", "a#2", "a#3"]
    assert handler.applied == [3, 1, 2]
