"""Fuzzed Lambda events (hypothesis): whatever a record looks like, it is applied or parked
with a clear error, it never costs the rest of its batch, and the processor never raises for
a record-level problem.

Each example is one event of good records of both sources mixed with broken ones: missing and
mistyped fields, bad base64, truncated and corrupted KPL aggregates, huge payloads, malformed
DynamoDB images, unknown event sources, records that are not objects, and several shards.
"""

from __future__ import annotations

import base64
import copy
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processor import OrderedProcessor
from processor.checkpoint import MemoryCheckpointStore
from processor.poison import MemoryPoisonSink
from processor.testing import dynamodb_record, kinesis_record, kpl_aggregate

FUZZ = settings(
    max_examples=200,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

JUNK = st.one_of(
    st.none(),
    st.integers(-5, 5),
    st.floats(allow_nan=True),
    st.text(max_size=5),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.booleans(),
)


def _good_kinesis(draw, seq: int) -> tuple[dict, int]:
    """A well-formed Kinesis record (plain or a KPL aggregate); its user record count."""
    shard = draw(st.sampled_from(["shardId-000000000000", "shardId-000000000001"]))
    key = draw(st.sampled_from("abc"))
    if draw(st.booleans()):
        subs = draw(st.integers(1, 3))
        data = kpl_aggregate([(key, json.dumps({"sub": i}).encode()) for i in range(subs)])
        return kinesis_record(key, seq, data, shard_id=shard), subs
    payload = draw(st.sampled_from([b"{}", b"not json", b"", b"x" * 300_000]))
    return kinesis_record(key, seq, payload, shard_id=shard), 1


def _good_dynamodb(draw, seq: int) -> tuple[dict, int]:
    keys = {"pk": draw(st.sampled_from(["p", "q"])), "sk": draw(st.integers(0, 1))}
    image = {**keys, "blob": b"\x00\x01", "n": seq}
    name = draw(st.sampled_from(["INSERT", "MODIFY", "REMOVE"]))
    new = None if name == "REMOVE" else image
    return dynamodb_record(keys, seq, event_name=name, new_image=new, old_image=keys), 1


def _break(draw, record: dict) -> dict:
    """One way a record arrives broken."""
    record = copy.deepcopy(record)
    inner = "kinesis" if "kinesis" in record else "dynamodb"
    how = draw(
        st.sampled_from(
            [
                "drop-field",
                "junk-field",
                "bad-base64",
                "corrupt-aggregate",
                "truncated-aggregate",
                "bogus-attribute",
                "unknown-source",
                "not-an-object",
            ]
        )
    )
    if how == "not-an-object":
        return draw(JUNK)
    if how == "unknown-source":
        record["eventSource"] = draw(st.sampled_from(["aws:sqs", "", None, 7]))
        return record
    if how == "bogus-attribute" and inner == "dynamodb":
        image = record["dynamodb"].setdefault("NewImage", {})
        image["n"] = draw(st.sampled_from([{"BOGUS": "1"}, {"N": "x"}, {"B": "%%"}, "plain"]))
        return record
    if inner == "kinesis" and how in ("bad-base64", "corrupt-aggregate", "truncated-aggregate"):
        aggregate = bytearray(kpl_aggregate([("a", b"{}"), ("b", b"{}")]))
        if how == "bad-base64":
            record["kinesis"]["data"] = draw(st.sampled_from(["not base64!", "abc", "===="]))
            return record
        if how == "corrupt-aggregate":
            aggregate[-1] ^= 0xFF
        else:
            aggregate = aggregate[: draw(st.integers(4, len(aggregate) - 1))]
        record["kinesis"]["data"] = base64.b64encode(bytes(aggregate)).decode()
        return record
    fields = {
        "kinesis": ["kinesis", "partitionKey", "sequenceNumber", "data", "eventID"],
        "dynamodb": ["dynamodb", "Keys", "SequenceNumber", "eventName"],
    }[inner]
    name = draw(st.sampled_from(fields))
    target = record if name in ("kinesis", "dynamodb", "eventID", "eventName") else record[inner]
    if how == "drop-field":
        target.pop(name, None)
    else:
        target[name] = draw(JUNK)
    return record


@st.composite
def events(draw) -> tuple[list, int]:
    """Records of an event and how many well-formed user records it holds."""
    records, good = [], 0
    sequence = draw(st.sampled_from([1, 99, 10**30]))
    for _ in range(draw(st.integers(1, 12))):
        sequence += draw(st.integers(1, 1000))
        make = _good_kinesis if draw(st.booleans()) else _good_dynamodb
        record, users = make(draw, sequence)
        if draw(st.integers(0, 2)) == 0:
            records.append(_break(draw, record))
        else:
            records.append(record)
            good += users
    return records, good


@FUZZ
@given(events())
def test_every_record_is_applied_or_parked_and_none_costs_the_batch(example):
    records, good = example
    applied = []

    def apply(record) -> None:
        _ = record.data  # reads its data: data that is not base64 fails here
        applied.append(record.position)

    processor = OrderedProcessor(
        apply,
        checkpoints=MemoryCheckpointStore(),
        poison=MemoryPoisonSink(),
        max_attempts=1,
    )

    response = processor.process({"Records": records})  # never raises

    assert response == {"batchItemFailures": []}  # the function never failed a record
    result = processor.last_result
    parked = [json.loads(m) for m in processor.poison.messages]
    # Every good user record applied once (a broken one may still parse: some breakage, such
    # as a dropped eventID, leaves a record the processor can apply).
    assert len(applied) == len(set(applied)) == result.applied
    assert result.applied >= good
    assert result.applied + result.parked + result.duplicates == _user_records(processor, records)
    for message in parked:
        assert message["error"]["type"] and message["error"]["message"]


def _user_records(processor: OrderedProcessor, records: list) -> int:
    """How many items the processor saw: a KPL aggregate stands for its user records."""
    from processor.records import parse_event

    return len(parse_event({"Records": records}))
