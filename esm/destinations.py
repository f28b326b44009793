"""On-failure destinations of a stream mapping: SQS queues, SNS topics, S3 buckets.

The kind comes from the destination ARN's service, by table (``DESTINATIONS``). What each
kind receives, as the Lambda developer guide documents it for Kinesis and DynamoDB Streams:
- SQS and SNS: the invocation record's metadata alone, as the message body (no SNS subject
  or message attributes are documented, so none are set);
- S3: one object per failed batch holding the record plus ``payload``, the batch's
  invocation event as an escaped JSON string, under the key
  ``aws/lambda/<ESM-UUID>/<shardID>/YYYY/MM/DD/YYYY-MM-DDTHH.MM.SS-<Random UUID>``.
https://docs.aws.amazon.com/lambda/latest/dg/kinesis-on-failure-destination.html
https://docs.aws.amazon.com/lambda/latest/dg/services-dynamodb-errors.html

A destination that does not answer raises from ``send`` (a botocore error): the runner keeps
the shard where it is and retries. ``check`` asks once whether the destination exists, so the
CLI can refuse a missing one before anything starts.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import boto3
from botocore.exceptions import ClientError

from esm.settings import stand_in_uuid
from processor.aws import LazyClient, error_code, parse_arn, unqualified_function_arn
from processor.contracts import OnFailureRecord


class OnFailureRecordWithPayload(OnFailureRecord):
    """AWS's on-failure record as the runner builds it: with ``payload``, which only an S3
    destination keeps ("Only available in S3")."""

    payload: str  # the batch's invocation event, {"Records": [...]}, as a JSON string


def metadata_only(record: OnFailureRecord) -> OnFailureRecord:
    """The record as SQS and SNS destinations get it: without ``payload``."""
    return {key: value for key, value in record.items() if key != "payload"}  # type: ignore[return-value]


class UnsupportedDestination(ValueError):
    """An on-failure destination ARN of a kind stream mappings cannot send to."""

    def __init__(self, arn: str) -> None:
        super().__init__(
            f"on-failure destination {arn}: a stream mapping sends to an SQS queue, "
            "SNS topic or S3 bucket (arn:aws:sqs:..., arn:aws:sns:..., arn:aws:s3:::BUCKET)"
        )
        self.arn = arn


class DestinationNotFound(Exception):
    """The destination's queue, topic or bucket is not at the endpoint."""

    def __init__(self, arn: str) -> None:
        super().__init__(f"on-failure destination {arn} is not at the endpoint")
        self.arn = arn


def _translate_not_found(arn: str, exc: ClientError, codes: frozenset[str]) -> Exception:
    return DestinationNotFound(arn) if error_code(exc) in codes else exc


class SqsDestination:
    """Sends on-failure records to an SQS queue given by its ARN."""

    client = LazyClient("sqs")
    _NOT_FOUND = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})

    def __init__(self, queue_arn: str, client=None, session=None) -> None:
        self.arn = queue_arn
        self.boto3_client = client
        self.boto3_session = session
        self.region_name = parse_arn(queue_arn).region
        self._queue_url: str | None = None

    @property
    def queue_url(self) -> str:
        if self._queue_url is None:
            arn = parse_arn(self.arn)
            self._queue_url = self.client.get_queue_url(
                QueueName=arn.resource_name, QueueOwnerAWSAccountId=arn.account
            )["QueueUrl"]
        return self._queue_url

    def check(self) -> None:
        try:
            self.queue_url  # noqa: B018 - resolving the URL is the existence check
        except ClientError as exc:
            raise _translate_not_found(self.arn, exc, self._NOT_FOUND) from exc

    def send(self, record: OnFailureRecord) -> None:
        self.client.send_message(
            QueueUrl=self.queue_url, MessageBody=json.dumps(metadata_only(record))
        )


class SnsDestination:
    """Publishes on-failure records to an SNS topic given by its ARN: the record is the
    message, nothing else is set."""

    client = LazyClient("sns")
    _NOT_FOUND = frozenset({"NotFound", "NotFoundException"})

    def __init__(self, topic_arn: str, client=None, session=None) -> None:
        self.arn = topic_arn
        self.boto3_client = client
        self.boto3_session = session
        self.region_name = parse_arn(topic_arn).region

    def check(self) -> None:
        try:
            self.client.get_topic_attributes(TopicArn=self.arn)
        except ClientError as exc:
            raise _translate_not_found(self.arn, exc, self._NOT_FOUND) from exc

    def send(self, record: OnFailureRecord) -> None:
        self.client.publish(TopicArn=self.arn, Message=json.dumps(metadata_only(record)))


class S3Destination:
    """Writes each on-failure record, with its batch's payload, as one object in a bucket
    given by its ARN (``arn:aws:s3:::BUCKET``: no region, the session's is used).

    The key names the mapping's UUID. ``mapping_uuid`` gives it; without it, the UUID is that
    of the function's mapping on the stream at the endpoint, and for a mapping that exists
    only as flags (no UUID anywhere) a stable stand-in derived from the two ARNs.
    """

    client = LazyClient("s3")
    _NOT_FOUND = frozenset({"404", "NoSuchBucket", "NotFound"})

    def __init__(self, bucket_arn: str, mapping_uuid: str | None = None, client=None, session=None):
        self.arn = bucket_arn
        self.bucket = parse_arn(bucket_arn).resource_name
        self.mapping_uuid = mapping_uuid
        self.boto3_client = client
        self.boto3_session = session
        self.region_name = None
        self._found_uuids: dict[tuple[str, str], str] = {}

    def check(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            raise _translate_not_found(self.arn, exc, self._NOT_FOUND) from exc

    def send(self, record: OnFailureRecordWithPayload) -> None:
        self.client.put_object(
            Bucket=self.bucket, Key=self.object_key(record), Body=json.dumps(record).encode()
        )

    def object_key(self, record: OnFailureRecord) -> str:
        """``aws/lambda/<ESM-UUID>/<shardID>/YYYY/MM/DD/YYYY-MM-DDTHH.MM.SS-<Random UUID>``,
        dated by the record's timestamp (UTC)."""
        info = record.get("KinesisBatchInfo") or record["DDBStreamBatchInfo"]
        moment = datetime.strptime(record["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        esm_uuid = self.mapping_uuid or self._mapping_uuid(
            record["requestContext"]["functionArn"], info["streamArn"]
        )
        return (
            f"aws/lambda/{esm_uuid}/{info['shardId']}/{moment:%Y/%m/%d}/"
            f"{moment:%Y-%m-%dT%H.%M.%S}-{uuid.uuid4()}"
        )

    def _mapping_uuid(self, function_arn: str, stream_arn: str) -> str:
        key = (unqualified_function_arn(function_arn), stream_arn)
        if key not in self._found_uuids:
            self._found_uuids[key] = self._find_mapping_uuid(*key) or stand_in_uuid(*key)
        return self._found_uuids[key]

    def _find_mapping_uuid(self, function_arn: str, stream_arn: str) -> str | None:
        # Listing all and filtering by FunctionArn works on moto and AWS alike (see
        # esm.settings.load_mappings).
        session = self.boto3_session or boto3.Session()
        pages = session.client("lambda").get_paginator("list_event_source_mappings").paginate()
        for page in pages:
            for mapping in page["EventSourceMappings"]:
                if mapping.get("EventSourceArn") != stream_arn:
                    continue
                try:
                    if unqualified_function_arn(mapping.get("FunctionArn") or "") == function_arn:
                        return mapping["UUID"]
                except ValueError:
                    continue
        return None


# Destination kinds by the ARN's service.
DESTINATIONS = {"sqs": SqsDestination, "sns": SnsDestination, "s3": S3Destination}


def destination_for(arn: str | None, session=None, mapping_uuid: str | None = None):
    """The destination for an on-failure ARN, by service; None when there is none.

    Raises ``UnsupportedDestination`` (a ValueError) for any other kind of ARN.
    """
    if not arn:
        return None
    try:
        kind = DESTINATIONS.get(parse_arn(arn).service)
    except ValueError:
        kind = None
    if kind is None:
        raise UnsupportedDestination(arn)
    if kind is S3Destination:
        return S3Destination(arn, mapping_uuid=mapping_uuid, session=session)
    return kind(arn, session=session)
