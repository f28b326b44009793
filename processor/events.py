"""What Lambda hands a stream handler: the event's records and the context. One definition
each, used by the unit-test builders (`processor.testing`), the local runner (`esm/`) and the
replay tool, so that every event the handler sees has the documented shape.

- Kinesis: https://docs.aws.amazon.com/lambda/latest/dg/with-kinesis.html (sample event)
- DynamoDB Streams: https://docs.aws.amazon.com/lambda/latest/dg/with-ddb.html (sample event)
- Context: https://docs.aws.amazon.com/lambda/latest/dg/python-context.html
"""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any

from processor.aws import parse_arn

KINESIS_EVENT_SOURCE = "aws:kinesis"
DYNAMODB_EVENT_SOURCE = "aws:dynamodb"


def kinesis_event_record(
    *,
    event_source_arn: str,
    shard_id: str,
    partition_key: str,
    sequence_number: str,
    data: bytes,
    arrival_s: float,
    invoke_identity_arn: str,
    encryption_type: str | None = None,
) -> dict[str, Any]:
    """One Kinesis record as it stands in the event's `Records[]`."""
    kinesis: dict[str, Any] = {
        "kinesisSchemaVersion": "1.0",
        "partitionKey": partition_key,
        "sequenceNumber": sequence_number,
        "data": base64.b64encode(data).decode("ascii"),
        "approximateArrivalTimestamp": arrival_s,
    }
    if encryption_type not in (None, "NONE"):
        kinesis["encryptionType"] = encryption_type
    return {
        "kinesis": kinesis,
        "eventSource": KINESIS_EVENT_SOURCE,
        "eventVersion": "1.0",
        "eventID": f"{shard_id}:{sequence_number}",
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": invoke_identity_arn,
        "awsRegion": parse_arn(event_source_arn).region,
        "eventSourceARN": event_source_arn,
    }


def dynamodb_event_record(
    *,
    event_source_arn: str,
    stream_record: dict[str, Any],
    event_name: str,
    event_id: str | None = None,
    event_version: str = "1.1",
    region: str | None = None,
    user_identity: dict | None = None,
) -> dict[str, Any]:
    """One DynamoDB Streams record as it stands in the event's `Records[]`; `stream_record`
    (the `dynamodb` object) must already be in wire form (`wire_attribute_value`)."""
    record: dict[str, Any] = {
        "eventID": event_id or uuid.uuid4().hex,
        "eventName": event_name,
        "eventVersion": event_version,
        "eventSource": DYNAMODB_EVENT_SOURCE,
        "awsRegion": region or parse_arn(event_source_arn).region,
        "dynamodb": stream_record,
        "eventSourceARN": event_source_arn,
    }
    if user_identity:
        record["userIdentity"] = user_identity
    return record


def wire_attribute_value(value: dict[str, Any]) -> dict[str, Any]:
    """An AttributeValue as Lambda's JSON event carries it: B and BS members in base64
    (boto3 and botocore hand them over as bytes; already-encoded strings stay as they are)."""
    ((tag, inner),) = value.items()
    if tag == "B":
        return {"B": _b64(inner)}
    if tag == "BS":
        return {"BS": [_b64(member) for member in inner]}
    if tag == "M":
        return {"M": {name: wire_attribute_value(v) for name, v in inner.items()}}
    if tag == "L":
        return {"L": [wire_attribute_value(v) for v in inner]}
    return {tag: inner}


def wire_image(image: dict[str, dict]) -> dict[str, dict]:
    return {name: wire_attribute_value(value) for name, value in image.items()}


def _b64(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("ascii")
    return value


class LambdaContext:
    """The context object Lambda's Python runtime passes to a handler, with a real clock:
    `get_remaining_time_in_millis()` counts down to `deadline_s` (time.time() seconds)."""

    def __init__(
        self,
        *,
        deadline_s: float,
        function_name: str = "",
        function_version: str = "$LATEST",
        invoked_function_arn: str = "",
        memory_limit_in_mb: int = 128,
        aws_request_id: str | None = None,
        log_group_name: str = "",
        log_stream_name: str = "",
    ) -> None:
        self.function_name = function_name
        self.function_version = function_version
        self.invoked_function_arn = invoked_function_arn
        self.memory_limit_in_mb = memory_limit_in_mb
        self.aws_request_id = aws_request_id or str(uuid.uuid4())
        self.log_group_name = log_group_name
        self.log_stream_name = log_stream_name
        self.identity = None
        self.client_context = None
        self.deadline_s = deadline_s

    @classmethod
    def with_timeout(cls, timeout_s: float, **fields: Any) -> LambdaContext:
        """A context for an invocation that starts now and may run `timeout_s` seconds."""
        return cls(deadline_s=time.time() + timeout_s, **fields)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline_s - time.time()) * 1000))
