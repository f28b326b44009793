"""Builders for Lambda-shaped stream events, for unit tests of record handlers.

Shapes follow the AWS documentation's examples:
https://docs.aws.amazon.com/lambda/latest/dg/with-kinesis.html (sample event) and
https://docs.aws.amazon.com/lambda/latest/dg/with-ddb.html (sample event).
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from boto3.dynamodb.types import TypeSerializer

KINESIS_ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/streamline-test"
DYNAMODB_ARN = (
    "arn:aws:dynamodb:us-east-1:123456789012:table/streamline-test/stream/2024-01-01T00:00:00.000"
)

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
    sequence_number = str(sequence_number)
    return {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": partition_key,
            "sequenceNumber": sequence_number,
            "data": base64.b64encode(data).decode(),
            "approximateArrivalTimestamp": time.time(),
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": f"{shard_id}:{sequence_number}",
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": "arn:aws:iam::123456789012:role/lambda-role",
        "awsRegion": "us-east-1",
        "eventSourceARN": arn,
    }


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
    return {
        "eventID": uuid.uuid4().hex,
        "eventName": event_name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": stream_record,
        "eventSourceARN": arn,
    }


def _attribute_map(values: dict) -> dict:
    return {name: _wire(_serializer.serialize(value)) for name, value in values.items()}


def _wire(value: dict) -> dict:
    """An attribute value as Lambda's JSON event carries it: B and BS members in base64."""
    ((tag, inner),) = value.items()
    if tag == "B":
        return {"B": base64.b64encode(inner).decode()}
    if tag == "BS":
        return {"BS": [base64.b64encode(v).decode() for v in inner]}
    if tag == "M":
        return {"M": {k: _wire(v) for k, v in inner.items()}}
    if tag == "L":
        return {"L": [_wire(v) for v in inner]}
    return value


def event(*records: dict) -> dict:
    return {"Records": list(records)}


@dataclass
class LambdaContext:
    """The parts of Lambda's context object the processor reads, with a real clock."""

    timeout_ms: int = 3000
    function_name: str = "streamline-test"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 128
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:streamline-test"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    _started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int(self.timeout_ms - (time.monotonic() - self._started) * 1000))


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
