"""The on-failure record Lambda sends when it gives up on a batch.

The record's shape is ``processor.contracts.OnFailureRecord`` (one definition, shared with the
replay tool), plus the batch's ``payload``, which only S3 destinations keep. Field formats
follow AWS's recorded behaviour: Kinesis timestamps carry milliseconds, DynamoDB arrival
times whole seconds. The destinations (SQS, SNS, S3) are in ``esm/destinations.py``;
``destination_for`` is importable from here too.
- https://docs.aws.amazon.com/lambda/latest/dg/kinesis-on-failure-destination.html
- https://docs.aws.amazon.com/lambda/latest/dg/services-dynamodb-errors.html
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from datetime import UTC, datetime

from esm.destinations import OnFailureRecordWithPayload, destination_for
from esm.sources import StreamRecord, event_payload
from processor.aws import parse_arn
from processor.contracts import (
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
) -> OnFailureRecordWithPayload:
    """AWS's on-failure record for ``records`` (a contiguous run of one shard, in order),
    with ``payload``: the invocation event of those records, as S3 destinations get it.

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
    record: OnFailureRecordWithPayload = {"requestContext": request_context}  # type: ignore[typeddict-item]
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
    record["payload"] = event_payload(list(records))
    return record


__all__ = ["Condition", "destination_for", "iso_utc", "on_failure_record"]
