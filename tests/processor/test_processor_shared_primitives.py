"""The primitives every layer shares (processor/aws.py, processor/events.py, the demo event)."""

from __future__ import annotations

import json
import random

import pytest
from botocore.exceptions import ClientError

from processor.aws import Backoff, error_code, parse_arn, unqualified_function_arn
from processor.contracts import DemoEvent
from processor.events import LambdaContext, kinesis_event_record, wire_attribute_value
from processor.records import parse_event


@pytest.mark.parametrize(
    ("arn", "service", "region", "account", "name"),
    [
        ("arn:aws:kinesis:us-east-1:111:stream/orders", "kinesis", "us-east-1", "111", "orders"),
        (
            "arn:aws:dynamodb:eu-west-1:222:table/items/stream/2024-01-01T00:00:00.000",
            "dynamodb",
            "eu-west-1",
            "222",
            "items",
        ),
        ("arn:aws:lambda:us-east-1:333:function:f:live", "lambda", "us-east-1", "333", "f"),
        ("arn:aws:sqs:ap-south-1:444:poison", "sqs", "ap-south-1", "444", "poison"),
    ],
)
def test_an_arn_splits_into_its_parts_and_back(arn, service, region, account, name):
    parts = parse_arn(arn)

    assert (parts.service, parts.region, parts.account, parts.resource_name) == (
        service,
        region,
        account,
        name,
    )
    assert str(parts) == arn


@pytest.mark.parametrize("text", ["", "orders", "arn:aws::r:a:x", "arn:aws:s:r:a:", None])
def test_what_is_not_an_arn_is_a_value_error(text):
    with pytest.raises(ValueError, match="not an ARN"):
        parse_arn(text)


def test_a_function_arn_loses_its_qualifier():
    assert (
        unqualified_function_arn("arn:aws:lambda:us-east-1:1:function:f:7")
        == "arn:aws:lambda:us-east-1:1:function:f"
    )


def test_the_error_code_is_read_from_a_client_error_only():
    assert error_code(ClientError({"Error": {"Code": "ThrottlingException"}}, "Op")) == (
        "ThrottlingException"
    )
    assert error_code(ClientError({}, "Op")) == ""
    assert error_code(ValueError("x")) == ""


def test_backoff_doubles_up_to_its_cap_and_jitters_below_it():
    plain = Backoff(base_s=0.1, cap_s=1.0, jitter=False)
    assert [plain.delay_s(a) for a in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    jittered = Backoff(base_s=0.1, cap_s=1.0, rng=random.Random(7))
    assert all(0 <= jittered.delay_s(a) <= min(1.0, 0.1 * 2**a) for a in range(40))


def test_a_built_kinesis_record_parses_back_to_its_coordinates_and_data():
    record = kinesis_event_record(
        event_source_arn="arn:aws:kinesis:eu-west-1:1:stream/s",
        shard_id="shardId-000000000002",
        partition_key="k",
        sequence_number="49590338271490256608559692538361571095921575989136588898",
        data=b'{"a":1}',
        arrival_s=1.5,
        invoke_identity_arn="arn:aws:iam::1:role/r",
    )

    (parsed,) = parse_event({"Records": [json.loads(json.dumps(record))]})

    assert record["awsRegion"] == "eu-west-1"
    assert (parsed.shard_id, parsed.partition_key, parsed.json()) == (
        "shardId-000000000002",
        "k",
        {"a": 1},
    )


def test_binary_attribute_values_go_on_the_wire_in_base64():
    value = {"M": {"b": {"B": b"\x00\x01"}, "s": {"BS": [b"x"]}, "l": {"L": [{"B": b"y"}]}}}

    assert wire_attribute_value(value) == {
        "M": {"b": {"B": "AAE="}, "s": {"BS": ["eA=="]}, "l": {"L": [{"B": "eQ=="}]}}
    }


def test_the_context_counts_down_to_its_deadline():
    context = LambdaContext.with_timeout(3.0, function_name="f")

    assert 2_000 < context.get_remaining_time_in_millis() <= 3_000
    assert LambdaContext(deadline_s=0).get_remaining_time_in_millis() == 0


@pytest.mark.parametrize("poison", [False, True])
def test_the_demo_event_reads_back_from_its_kinesis_data_and_its_item(poison):
    from boto3.dynamodb.types import TypeDeserializer

    event = DemoEvent("k-1", 3, "p", poison)
    image = {name: TypeDeserializer().deserialize(v) for name, v in event.item().items()}

    assert DemoEvent.from_body(json.loads(event.data())) == event
    assert DemoEvent.from_image(image) == event
