"""The messages replay and verify read, for the tests in this folder: builders for the poison
message this project parks (`processor.contracts.PoisonMessage`) and the on-failure record
Lambda sends to a mapping's failure destination (`OnFailureRecord`), where a test overrides
the fields it is about; `send` puts one on a queue, `peek` reads a queue without consuming it.

https://docs.aws.amazon.com/lambda/latest/dg/kinesis-on-failure-destination.html
"""

from __future__ import annotations

import base64
import json
from typing import Any

from processor.contracts import OnFailureRecord, PoisonMessage


def kinesis_poison(
    stream_arn: str,
    body: dict[str, Any],
    sequence_number: str = "1",
    shard_id: str = "shardId-000000000000",
    **fields: Any,
) -> PoisonMessage:
    """A Kinesis record parked with its data: `body` as JSON, keyed by its `key`."""
    data = base64.b64encode(json.dumps(body).encode()).decode()
    message = _poison("kinesis", stream_arn, shard_id, body["key"], sequence_number, data=data)
    message.update(fields)  # type: ignore[typeddict-item]
    return message


def dynamodb_poison(
    stream_arn: str, stream_record: dict[str, Any], sequence_number: str = "100", **fields: Any
) -> PoisonMessage:
    """A DynamoDB stream record parked with its `dynamodb` object, keyed as the processor keys
    it (the item key's values as JSON). Lambda's DynamoDB records name no shard."""
    keys = {name: next(iter(value.values())) for name, value in stream_record["Keys"].items()}
    message = _poison(
        "dynamodb",
        stream_arn,
        "",
        json.dumps(keys),
        sequence_number,
        dynamodb={**stream_record, "SequenceNumber": sequence_number},
    )
    message.update(fields)  # type: ignore[typeddict-item]
    return message


def _poison(
    source: str,
    stream_arn: str,
    shard_id: str,
    partition_key: str,
    sequence_number: str,
    **payload: Any,
) -> PoisonMessage:
    return {  # type: ignore[typeddict-item]
        "version": "1",
        "source": source,
        "eventSourceARN": stream_arn,
        "shardId": shard_id,
        "partitionKey": partition_key,
        "sequenceNumber": sequence_number,
        "subSequenceNumber": 0,
        **payload,
        "error": {"type": "PoisonEventError", "message": "poison", "traceback": "Traceback..."},
        "attempts": 3,
        "firstFailureAt": "2026-01-01T00:00:00.000Z",
        "parkedAt": "2026-01-01T00:00:01.000Z",
    }


def on_failure_record(
    stream_arn: str,
    shard_id: str,
    start: str,
    end: str,
    size: int,
    function_error: str | None = "Unhandled",
    batch_info: str = "KinesisBatchInfo",
) -> OnFailureRecord:
    """The record Lambda sends for a batch it gave up on after its retries; `batch_info` is
    `KinesisBatchInfo` or `DDBStreamBatchInfo`, `function_error` None after a response."""
    return {
        "requestContext": {
            "requestId": "c9b8fa9f-5a7f-4b5e-8b0e-3e4b6a1f0e00",
            "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:demo",
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": 3,
        },
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": function_error,
        },
        "version": "1.0",
        "timestamp": "2026-01-01T00:00:02.000Z",
        batch_info: {  # type: ignore[misc]
            "shardId": shard_id,
            "startSequenceNumber": start,
            "endSequenceNumber": end,
            "approximateArrivalOfFirstRecord": "2026-01-01T00:00:00.000Z",
            "approximateArrivalOfLastRecord": "2026-01-01T00:00:00.100Z",
            "batchSize": size,
            "streamArn": stream_arn,
        },
    }


def send(sqs, queue_url: str, body: dict) -> None:
    sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(body))


def peek(sqs, queue_url: str) -> list[dict]:
    """Every message on the queue, left there: received hidden, then made visible again.
    (No long polling, unlike verify's walk: a test's queue is on one emulator.)"""
    found: dict[str, dict] = {}
    handles: list[str] = []
    while True:
        batch = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=30, WaitTimeSeconds=0
        ).get("Messages", [])
        if not batch:
            break
        for message in batch:
            found[message["MessageId"]] = message
            handles.append(message["ReceiptHandle"])
    for handle in handles:
        sqs.change_message_visibility(QueueUrl=queue_url, ReceiptHandle=handle, VisibilityTimeout=0)
    return list(found.values())
