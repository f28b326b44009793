"""Builders for Lambda-shaped stream events, for unit tests of record handlers.

Shapes follow the AWS documentation's examples:
https://docs.aws.amazon.com/lambda/latest/dg/with-kinesis.html (sample event) and
https://docs.aws.amazon.com/lambda/latest/dg/with-ddb.html (sample event).
"""

from __future__ import annotations

import json
import time
from typing import Any

from boto3.dynamodb.types import TypeSerializer

from processor import events
from processor.events import dynamodb_event_record, kinesis_event_record, wire_attribute_value

KINESIS_ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/streamline-test"
DYNAMODB_ARN = (
    "arn:aws:dynamodb:us-east-1:123456789012:table/streamline-test/stream/2024-01-01T00:00:00.000"
)
ROLE_ARN = "arn:aws:iam::123456789012:role/lambda-role"
FUNCTION_NAME = "streamline-test"

_serializer = TypeSerializer()


def kinesis_record(
    partition_key: str,
    sequence_number: str | int,
    data: bytes | str | dict,
    *,
    shard_id: str = "shardId-000000000000",
    arn: str = KINESIS_ARN,
) -> dict:
    if isinstance(data, dict):
        data = json.dumps(data)
    if isinstance(data, str):
        data = data.encode()
    return kinesis_event_record(
        event_source_arn=arn,
        shard_id=shard_id,
        partition_key=partition_key,
        sequence_number=str(sequence_number),
        data=data,
        arrival_s=time.time(),
        invoke_identity_arn=ROLE_ARN,
    )


def dynamodb_record(
    keys: dict,
    sequence_number: str | int,
    *,
    event_name: str = "MODIFY",
    new_image: dict | None = None,
    old_image: dict | None = None,
    arn: str = DYNAMODB_ARN,
) -> dict:
    stream_record: dict[str, Any] = {
        "ApproximateCreationDateTime": int(time.time()),
        "Keys": _attribute_map(keys),
        "SequenceNumber": str(sequence_number),
        "SizeBytes": 26,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    if new_image is not None:
        stream_record["NewImage"] = _attribute_map(new_image)
    if old_image is not None:
        stream_record["OldImage"] = _attribute_map(old_image)
    return dynamodb_event_record(
        event_source_arn=arn, stream_record=stream_record, event_name=event_name
    )


def _attribute_map(values: dict) -> dict:
    """Python values as the attribute values of Lambda's JSON event."""
    return {name: wire_attribute_value(_serializer.serialize(v)) for name, v in values.items()}


def event(*records: dict) -> dict:
    return {"Records": list(records)}


def lambda_context(timeout_ms: int = 3000, **fields: Any) -> events.LambdaContext:
    """Lambda's context object for an invocation that starts now and may run `timeout_ms`;
    `fields` override the test function's name, ARN, request id and so on."""
    defaults: dict[str, Any] = {
        "function_name": FUNCTION_NAME,
        "invoked_function_arn": f"arn:aws:lambda:us-east-1:123456789012:function:{FUNCTION_NAME}",
    }
    return events.LambdaContext.with_timeout(timeout_ms / 1000, **(defaults | fields))


# The builder's name when it was a class of its own; tests elsewhere call it so.
LambdaContext = lambda_context


def kpl_aggregate(user_records: list[tuple[str, bytes]]) -> bytes:
    """A KPL aggregate of (partition key, data) user records, built with aws-kinesis-agg."""
    from aws_kinesis_agg.aggregator import RecordAggregator

    aggregator = RecordAggregator()
    for partition_key, data in user_records:
        aggregator.add_user_record(partition_key, data)
    _, _, data = aggregator.clear_and_get().get_contents()
    return data


def kinesis_record_raw(partition_key: str, sequence_number: str | int, data_b64: str) -> dict:
    """A Kinesis record whose `data` is exactly the string given (for bad-input tests)."""
    record = kinesis_record(partition_key, sequence_number, b"")
    record["kinesis"]["data"] = data_b64
    return record
