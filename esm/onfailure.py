"""The on-failure record Lambda sends when it gives up on a batch, and the SQS destination.

The record's shape is ``processor.contracts.OnFailureRecord`` (one definition, shared with the
replay tool). Field formats follow AWS's recorded behaviour: Kinesis timestamps carry
milliseconds, DynamoDB arrival times whole seconds.
- https://docs.aws.amazon.com/lambda/latest/dg/kinesis-on-failure-destination.html
- https://docs.aws.amazon.com/lambda/latest/dg/services-dynamodb-errors.html
"""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from datetime import UTC, datetime

from esm.sources import StreamRecord
from processor.aws import LazyClient, parse_arn
from processor.contracts import (
    OnFailureRecord,
    OnFailureRequestContext,
    OnFailureResponseContext,
    StreamBatchInfo,
)

ON_FAILURE_VERSION = "1.0"


class Condition(enum.Enum):
    RETRY_ATTEMPTS_EXHAUSTED = "RetryAttemptsExhausted"
    RECORD_AGE_EXCEEDED = "RecordAgeExceeded"


# Per source: the batch-info key, and how precise its arrival times are.
_BATCH_INFO = {
    "kinesis": ("KinesisBatchInfo", True),
    "dynamodb": ("DDBStreamBatchInfo", False),
}


def iso_utc(epoch_s: float, milliseconds: bool = True) -> str:
    moment = datetime.fromtimestamp(epoch_s, tz=UTC)
    if milliseconds:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def on_failure_record(
    *,
    records: Sequence[StreamRecord],
    shard_id: str,
    stream_arn: str,
    function_arn: str,
    condition: Condition,
    request_id: str,
    invoke_count: int,
    function_error: str | None,
    now_s: float,
) -> OnFailureRecord:
    """AWS's on-failure record for ``records`` (a contiguous run of one shard, in order).

    ``RecordAgeExceeded`` has no responseContext: those records were not (re)invoked.
    """
    source = parse_arn(stream_arn).service
    info_key, arrival_ms = _BATCH_INFO[source]
    request_context: OnFailureRequestContext = {
        "requestId": request_id,
        "functionArn": function_arn,
        "condition": condition.value,
        "approximateInvokeCount": invoke_count,
    }
    batch_info: StreamBatchInfo = {
        "shardId": shard_id,
        "startSequenceNumber": records[0].sequence_number,
        "endSequenceNumber": records[-1].sequence_number,
        "approximateArrivalOfFirstRecord": iso_utc(records[0].arrival_s, arrival_ms),
        "approximateArrivalOfLastRecord": iso_utc(records[-1].arrival_s, arrival_ms),
        "batchSize": len(records),
        "streamArn": stream_arn,
    }
    record: OnFailureRecord = {"requestContext": request_context}
    if condition is Condition.RETRY_ATTEMPTS_EXHAUSTED:
        response_context: OnFailureResponseContext = {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": function_error,
        }
        record["responseContext"] = response_context
    record["version"] = ON_FAILURE_VERSION
    record["timestamp"] = iso_utc(now_s)
    record[info_key] = batch_info
    return record


class SqsDestination:
    """Sends on-failure records to an SQS queue given by its ARN."""

    client = LazyClient("sqs")

    def __init__(self, queue_arn: str, client=None, session=None) -> None:
        self.queue_arn = queue_arn
        self.boto3_client = client
        self.boto3_session = session
        self.region_name = parse_arn(queue_arn).region
        self._queue_url: str | None = None

    @property
    def queue_url(self) -> str:
        if self._queue_url is None:
            arn = parse_arn(self.queue_arn)
            self._queue_url = self.client.get_queue_url(
                QueueName=arn.resource_name, QueueOwnerAWSAccountId=arn.account
            )["QueueUrl"]
        return self._queue_url

    def send(self, record: OnFailureRecord) -> None:
        self.client.send_message(QueueUrl=self.queue_url, MessageBody=json.dumps(record))


def destination_for(arn: str | None, session=None):
    """The destination for an on-failure ARN, by service; None when there is none."""
    if not arn:
        return None
    if parse_arn(arn).service != "sqs":
        raise ValueError(f"on-failure destinations other than SQS are not supported: {arn}")
    return SqsDestination(arn, session=session)
