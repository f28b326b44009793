"""The bad-input corpus: every broken record ends parked with a clear error; nothing is lost."""

from __future__ import annotations

import base64
import hashlib
import json

import aws_kinesis_agg
import pytest

from processor import OrderedProcessor
from processor.checkpoint import MemoryCheckpointStore
from processor.poison import SQS_MAX_MESSAGE_BYTES, MemoryPoisonSink
from processor.testing import dynamodb_record, event, kinesis_record, kpl_aggregate


def _kinesis(data_b64: str, seq: int = 2) -> dict:
    record = kinesis_record("bad", seq, b"")
    record["kinesis"]["data"] = data_b64
    return record


def _without(record: dict, *path: str) -> dict:
    target = record
    for name in path[:-1]:
        target = target[name]
    del target[path[-1]]
    return record


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _aggregate_with_bad_key_index() -> str:
    from aws_kinesis_agg import deaggregator

    aggregate = deaggregator.messages_pb2.AggregatedRecord()
    aggregate.partition_key_table.append("only-key")
    sub = aggregate.records.add()
    sub.partition_key_index = 5
    sub.data = b"x"
    body = aggregate.SerializeToString()
    return _b64(aws_kinesis_agg.MAGIC + body + hashlib.md5(body).digest())


CORPUS = [
    pytest.param(_kinesis("***not-base64***"), "not valid base64", id="bad-base64"),
    pytest.param(_kinesis(_b64(kpl_aggregate([("k", b"v" * 50)])[:-5])), "MD5", id="truncated"),
    pytest.param(_kinesis(_b64(kpl_aggregate([("k", b"v")])[:-1] + b"\x00")), "MD5", id="bad-md5"),
    pytest.param(_kinesis(_aggregate_with_bad_key_index()), "partition key 5", id="bad-key-index"),
    pytest.param(
        _without(kinesis_record("bad", 2, b"x"), "kinesis", "data"),
        "kinesis.data",
        id="missing-data",
    ),
    pytest.param(
        _without(kinesis_record("bad", 2, b"x"), "kinesis", "partitionKey"),
        "partitionKey",
        id="missing-partition-key",
    ),
    pytest.param(
        {**kinesis_record("bad", 2, b"x"), "eventSource": "aws:sqs"},
        "unsupported eventSource",
        id="wrong-event-source",
    ),
    pytest.param(
        _without(kinesis_record("bad", 2, b"x"), "eventSource"),
        "unsupported eventSource",
        id="missing-event-source",
    ),
    pytest.param(
        {
            **dynamodb_record({"pk": "bad"}, 2, new_image={"pk": "bad"}),
            "dynamodb": {
                "Keys": {"pk": {"S": "bad"}},
                "SequenceNumber": "2",
                "NewImage": {"pk": {"XX": "?"}},
            },
        },
        "dynamodb.NewImage is malformed",
        id="malformed-dynamodb-image",
    ),
    pytest.param(
        {**dynamodb_record({"pk": "bad"}, 2), "eventName": "UPSERT"},
        "eventName",
        id="unknown-dynamodb-event-name",
    ),
    pytest.param(
        _without(dynamodb_record({"pk": "bad"}, 2), "dynamodb", "Keys"),
        "dynamodb.Keys",
        id="missing-dynamodb-keys",
    ),
]


@pytest.mark.parametrize(("broken", "error"), CORPUS)
def test_broken_record_is_parked_with_a_clear_error_and_nothing_is_lost(broken, error):
    applied = []
    processor = OrderedProcessor(
        lambda r: applied.append((r.data, r.sequence_number)[1]),  # reads its data
        checkpoints=MemoryCheckpointStore(),
        poison=MemoryPoisonSink(),
    )
    good_before = kinesis_record("good", 1, b"{}")
    good_after = kinesis_record("good", 3, b"{}")

    response = processor.process(event(good_before, broken, good_after))

    assert response == {"batchItemFailures": []}
    assert applied == ["1", "3"]
    (message,) = map(json.loads, processor.poison.messages)
    assert error in message["error"]["message"]
    assert message["sequenceNumber"] == "2"
    assert message["attempts"] == 1


def test_record_without_a_sequence_number_is_parked_with_what_arrived():
    processor = OrderedProcessor(
        lambda r: None, checkpoints=MemoryCheckpointStore(), poison=MemoryPoisonSink()
    )
    broken = _without(kinesis_record("bad", 2, b"payload"), "kinesis", "sequenceNumber")

    assert processor.process(event(broken)) == {"batchItemFailures": []}
    (message,) = map(json.loads, processor.poison.messages)
    assert base64.b64decode(message["data"]) == b"payload"
    assert "sequence number" in message["error"]["message"]


def test_oversized_payload_is_parked_with_its_coordinates_only():
    def reject(record):
        raise ValueError("too big to handle")

    processor = OrderedProcessor(
        reject, checkpoints=MemoryCheckpointStore(), poison=MemoryPoisonSink(), max_attempts=1
    )
    huge = kinesis_record("big", 42, b"x" * SQS_MAX_MESSAGE_BYTES)

    processor.process(event(huge))

    (body,) = processor.poison.messages
    message = json.loads(body)
    assert len(body.encode()) < SQS_MAX_MESSAGE_BYTES
    assert message["truncated"] is True
    assert "data" not in message
    assert (message["partitionKey"], message["sequenceNumber"]) == ("big", "42")
    assert message["error"]["message"] == "too big to handle"
