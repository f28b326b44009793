"""Events → records: the shapes AWS documents, KPL aggregates, and what cannot be parsed."""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from pathlib import Path

import pytest

from processor import Record, Source, Unparseable, parse_event
from processor.exceptions import CorruptAggregateError, InvalidEventError, RecordParseError
from processor.records import parse_record, serialise_key
from processor.testing import dynamodb_record, event, kinesis_record, kpl_aggregate

EVENTS = Path(__file__).parent.parent / "events"


def load_event(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


def test_kinesis_documentation_event_parses_to_records():
    records = parse_event(load_event("kinesis.json"))

    assert [type(r) for r in records] == [Record, Record]
    first = records[0]
    assert first.source == "kinesis"
    assert first.shard_id == "shardId-000000000006"
    assert first.partition_key == "1"
    assert first.sequence_number == "49590338271490256608559692538361571095921575989136588898"
    assert first.sub_sequence_number == 0
    assert first.data == b"Hello, this is a test."
    assert first.event_source_arn == "arn:aws:kinesis:us-east-2:123456789012:stream/lambda-stream"
    assert first.position == (49590338271490256608559692538361571095921575989136588898, 0)
    assert first.raw["eventID"].startswith("shardId-000000000006:")


def test_dynamodb_documentation_event_deserialises_images_to_plain_values():
    insert, modify, remove = parse_event(load_event("dynamodb.json"))

    assert insert.source is Source.DYNAMODB
    assert insert.event_name == "INSERT"
    assert insert.keys == {"Id": 101}
    assert insert.new_image == {"Message": "New item!", "Id": 101}
    assert insert.old_image is None
    assert modify.old_image == {"Message": "New item!", "Id": 101}
    assert modify.json() == {"Message": "This item has changed", "Id": 101}
    assert remove.new_image is None
    assert remove.json() == {"Message": "This item has changed", "Id": 101}
    assert [r.sequence_number for r in (insert, modify, remove)] == ["111", "222", "333"]
    assert insert.partition_key == modify.partition_key == '{"Id":101}'


def test_dynamodb_values_keep_their_types():
    record = dynamodb_record(
        {"pk": "a"},
        1,
        new_image={"pk": "a", "price": Decimal("1.25"), "blob": b"\x00\x01", "tags": {"x"}},
    )
    (parsed,) = parse_event(event(record))
    assert parsed.new_image == {
        "pk": "a",
        "price": Decimal("1.25"),
        "blob": b"\x00\x01",
        "tags": {"x"},
    }


def test_dynamodb_key_serialisation_is_stable_whatever_the_attribute_order():
    assert serialise_key({"b": 1, "a": "x"}) == serialise_key({"a": "x", "b": 1})


def test_kpl_aggregate_is_split_into_user_records_with_sub_sequence_numbers():
    users = [("k1", b"one"), ("k2", b"two"), ("k1", b"three")]
    record = kinesis_record("agg", 500, kpl_aggregate(users))

    parsed = parse_event(event(record))

    assert [(r.partition_key, r.data, r.sub_sequence_number) for r in parsed] == [
        ("k1", b"one", 0),
        ("k2", b"two", 1),
        ("k1", b"three", 2),
    ]
    assert {r.sequence_number for r in parsed} == {"500"}
    assert [r.position for r in parsed] == [(500, 0), (500, 1), (500, 2)]


def test_event_without_records_list_is_not_a_batch():
    with pytest.raises(InvalidEventError):
        parse_event({"detail-type": "Scheduled Event"})


def _corrupt_md5() -> str:
    data = bytearray(kpl_aggregate([("k", b"payload")]))
    data[-1] ^= 0xFF
    return base64.b64encode(bytes(data)).decode()


def _bad_protobuf_with_good_md5() -> str:
    import hashlib

    import aws_kinesis_agg

    body = b"\xff\xff\xff\xff not protobuf"
    return base64.b64encode(aws_kinesis_agg.MAGIC + body + hashlib.md5(body).digest()).decode()


def _truncated_aggregate(cut: int) -> str:
    return base64.b64encode(kpl_aggregate([("k", b"payload" * 20)])[:cut]).decode()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(_corrupt_md5(), "MD5 trailer does not match", id="bad-md5"),
        pytest.param(_truncated_aggregate(12), "truncated", id="truncated-header"),
        pytest.param(_truncated_aggregate(-3), "MD5 trailer does not match", id="truncated-body"),
        pytest.param(_bad_protobuf_with_good_md5(), "does not decode", id="bad-protobuf"),
    ],
)
def test_undecodable_kinesis_data_is_unparseable_with_a_clear_error(data, message):
    record = kinesis_record("k", 7, b"")
    record["kinesis"]["data"] = data

    (item,) = parse_event(event(record))

    assert isinstance(item, Unparseable)
    assert message in str(item.error)
    assert item.sequence_number == "7"
    assert item.partition_key == "k"


def test_aggregate_with_bad_md5_is_an_aggregate_error_not_a_plain_record():
    record = kinesis_record("k", 7, b"")
    record["kinesis"]["data"] = _corrupt_md5()
    (item,) = parse_event(event(record))
    assert isinstance(item.error, CorruptAggregateError)


def test_data_that_is_not_base64_fails_when_it_is_first_read():
    # Key and position come without decoding the payload (rule 12); the data is decoded on
    # first access, and an invalid one is the record's parse error then.
    raw = kinesis_record("k", 7, b"")
    raw["kinesis"]["data"] = "not base64!!"

    (record,) = parse_record(raw)

    assert (record.partition_key, record.position) == ("k", (7, 0))
    with pytest.raises(RecordParseError, match="not valid base64"):
        _ = record.data


def test_a_kpl_aggregate_is_still_split_when_it_is_parsed():
    raw = kinesis_record("k", 7, kpl_aggregate([("a", b"1"), ("b", b"2")]))

    records = parse_record(raw)

    assert [(r.partition_key, r.position, r.data) for r in records] == [
        ("a", (7, 0), b"1"),
        ("b", (7, 1), b"2"),
    ]
