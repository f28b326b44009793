"""Conformance: on-failure destinations of a stream mapping other than SQS (SNS, S3), and
destinations the runner refuses at start.

References (Lambda developer guide): kinesis-on-failure-destination.html,
services-dynamodb-errors.html. SQS and SNS get the invocation record's metadata; S3 gets one
object per batch with the record plus ``payload`` (the batch's event as a JSON string) under
``aws/lambda/<ESM-UUID>/<shardID>/YYYY/MM/DD/YYYY-MM-DDTHH.MM.SS-<Random UUID>``.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import uuid

import pytest
from conftest import CODE_DIR, mapping

from esm.cli import main
from esm.settings import load_mappings
from streamline.paths import REPO_ROOT

METADATA_KEYS = {"requestContext", "responseContext", "version", "timestamp"}
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def _topic_read_through_a_queue(harness) -> tuple[str, str]:
    """An SNS topic with an SQS queue subscribed (not raw: the queue gets SNS's envelope)."""
    topic_arn = harness.client("sns").create_topic(Name=harness.name)["TopicArn"]
    queue_url, queue_arn = harness.create_queue()
    harness.client("sns").subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
    return topic_arn, queue_url


def _bucket(harness) -> tuple[str, str]:
    name = harness.name.lower()[:63].strip("-")
    harness.client("s3").create_bucket(Bucket=name)
    return name, f"arn:aws:s3:::{name}"


def _objects(harness, bucket: str) -> dict[str, dict]:
    s3 = harness.client("s3")
    listing = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {
        item["Key"]: json.loads(s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())
        for item in listing
    }


def _endpoint_mapping(harness, function, stream_arn: str, destination_arn: str, **settings):
    """A mapping at the endpoint (it has a UUID, which S3 keys name), as the runner loads it."""
    esm_uuid = harness.create_mapping(
        function,
        stream_arn,
        StartingPosition="TRIM_HORIZON",
        DestinationConfig={"OnFailure": {"Destination": destination_arn}},
        **settings,
    )
    (loaded,) = load_mappings(harness.client("lambda"), function)
    assert loaded.uuid == esm_uuid and loaded.on_failure_destination_arn == destination_arn
    return esm_uuid, loaded


def _put_dynamodb(harness, table_name: str, values: list[str]) -> None:
    dynamodb = harness.client("dynamodb")
    for i, value in enumerate(values):
        dynamodb.put_item(TableName=table_name, Item={"pk": {"S": f"item-{i}"}, "v": {"S": value}})


def _assert_s3_key(key: str, esm_uuid: str, shard_id: str, record: dict) -> None:
    date, time_of_day = record["timestamp"][:10], record["timestamp"][11:19]
    expected = (
        f"aws/lambda/{esm_uuid}/{shard_id}/{date.replace('-', '/')}/"
        f"{date}T{time_of_day.replace(':', '.')}-{UUID}"
    )
    assert re.fullmatch(expected, key), (key, expected)


# --- SNS -------------------------------------------------------------------------------


def test_kinesis_exhausted_batch_is_published_to_an_sns_topic_as_the_invocation_record(harness):
    # Given a failing Kinesis batch and an SNS topic as the destination
    arn = harness.create_stream()
    results = harness.put([("k", "ok0"), ("k", "bad"), ("k", "ok2")])
    topic_arn, queue_url = _topic_read_through_a_queue(harness)
    function = harness.create_function("esm_handlers.fail_on_bad")

    harness.run(
        function, [mapping(arn, maximum_retry_attempts=1, on_failure_destination_arn=topic_arn)]
    )

    # Then one notification whose message is the record SQS would get: metadata, no payload,
    # and nothing else set (AWS documents no subject or message attributes)
    (envelope,) = harness.messages(queue_url)
    assert envelope["Type"] == "Notification" and envelope["TopicArn"] == topic_arn
    assert not envelope.get("Subject") and not envelope.get("MessageAttributes")
    failure = json.loads(envelope["Message"])
    assert set(failure) == METADATA_KEYS | {"KinesisBatchInfo"}
    assert failure["requestContext"] == {
        "requestId": harness.invocations()[-1]["requestId"],
        "functionArn": function.arn,
        "condition": "RetryAttemptsExhausted",
        "approximateInvokeCount": 2,
    }
    assert failure["responseContext"]["functionError"] == "Unhandled"
    info = failure["KinesisBatchInfo"]
    assert (info["shardId"], info["startSequenceNumber"], info["endSequenceNumber"]) == (
        results[0]["ShardId"],
        results[0]["SequenceNumber"],
        results[2]["SequenceNumber"],
    )
    assert (info["batchSize"], info["streamArn"]) == (3, arn)


def test_dynamodb_exhausted_batch_is_published_to_an_sns_topic_as_the_invocation_record(
    harness, table
):
    name, stream_arn = table
    _put_dynamodb(harness, name, ["ok", "bad"])
    topic_arn, queue_url = _topic_read_through_a_queue(harness)
    function = harness.create_function("esm_handlers.fail_on_bad")

    harness.run(
        function,
        [mapping(stream_arn, maximum_retry_attempts=0, on_failure_destination_arn=topic_arn)],
    )

    (envelope,) = harness.messages(queue_url)
    failure = json.loads(envelope["Message"])
    assert set(failure) == METADATA_KEYS | {"DDBStreamBatchInfo"}
    assert failure["requestContext"]["approximateInvokeCount"] == 1
    assert failure["DDBStreamBatchInfo"]["batchSize"] == 2
    assert failure["DDBStreamBatchInfo"]["streamArn"] == stream_arn


# --- S3 --------------------------------------------------------------------------------


def test_kinesis_exhausted_batch_lands_in_s3_with_its_payload_under_the_documented_key(harness):
    # Given a mapping at the endpoint with an S3 bucket as its on-failure destination
    arn = harness.create_stream()
    results = harness.put([("k", "ok0"), ("k", "bad"), ("k", "ok2")])
    bucket, bucket_arn = _bucket(harness)
    function = harness.create_function("esm_handlers.fail_on_bad")
    esm_uuid, loaded = _endpoint_mapping(harness, function, arn, bucket_arn, MaximumRetryAttempts=1)

    harness.run(function, [loaded])

    # Then one object, keyed by the mapping's UUID, the shard and the failure's time (UTC)
    ((key, failure),) = _objects(harness, bucket).items()
    shard_id = results[0]["ShardId"]
    _assert_s3_key(key, esm_uuid, shard_id, failure)
    # holding the invocation record and the batch's event as an escaped JSON string
    assert set(failure) == METADATA_KEYS | {"KinesisBatchInfo", "payload"}
    assert failure["requestContext"]["requestId"] == harness.invocations()[-1]["requestId"]
    assert failure["KinesisBatchInfo"]["shardId"] == shard_id
    assert failure["KinesisBatchInfo"]["batchSize"] == 3
    event = json.loads(failure["payload"])
    assert [base64.b64decode(r["kinesis"]["data"]).decode() for r in event["Records"]] == [
        "ok0",
        "bad",
        "ok2",
    ]
    assert [r["kinesis"]["sequenceNumber"] for r in event["Records"]] == [
        r["SequenceNumber"] for r in results
    ]
    assert {r["eventSourceARN"] for r in event["Records"]} == {arn}


def test_dynamodb_exhausted_batch_lands_in_s3_with_its_payload_under_the_documented_key(
    harness, table
):
    name, stream_arn = table
    _put_dynamodb(harness, name, ["ok", "bad"])
    bucket, bucket_arn = _bucket(harness)
    function = harness.create_function("esm_handlers.fail_on_bad")
    esm_uuid, loaded = _endpoint_mapping(
        harness, function, stream_arn, bucket_arn, MaximumRetryAttempts=0
    )

    harness.run(function, [loaded])

    ((key, failure),) = _objects(harness, bucket).items()
    info = failure["DDBStreamBatchInfo"]
    _assert_s3_key(key, esm_uuid, info["shardId"], failure)
    assert set(failure) == METADATA_KEYS | {"DDBStreamBatchInfo", "payload"}
    event = json.loads(failure["payload"])
    assert [r["dynamodb"]["NewImage"]["v"] for r in event["Records"]] == [{"S": "ok"}, {"S": "bad"}]
    assert [r["dynamodb"]["SequenceNumber"] for r in event["Records"]] == [
        info["startSequenceNumber"],
        info["endSequenceNumber"],
    ]


def test_a_mapping_given_by_flags_names_a_stable_stand_in_uuid_in_s3_keys(harness):
    # A mapping from flags has no UUID anywhere: both batches' keys name the same stand-in.
    arn = harness.create_stream()
    harness.put([("k", "bad0"), ("k", "bad1")])
    bucket, bucket_arn = _bucket(harness)
    function = harness.create_function("esm_handlers.fail_on_bad")

    harness.run(
        function,
        [
            mapping(
                arn, batch_size=1, maximum_retry_attempts=0, on_failure_destination_arn=bucket_arn
            )
        ],
    )

    keys = sorted(_objects(harness, bucket))
    assert len(keys) == 2
    stand_ins = {key.split("/")[2] for key in keys}
    assert len(stand_ins) == 1 and uuid.UUID(stand_ins.pop())


# --- refused at start ------------------------------------------------------------------


def test_a_destination_of_another_kind_is_refused_at_start_in_one_line(harness):
    arn = harness.create_stream()
    lambda_arn = "arn:aws:lambda:us-east-1:123456789012:function:elsewhere"

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "esm",
            "run",
            "--stream-arn",
            arn,
            "--handler",
            "esm_handlers.record",
            "--code-dir",
            str(CODE_DIR),
            "--on-failure-destination",
            lambda_arn,
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith(f"invalid setting: on-failure destination {lambda_arn}: ")
    assert "SQS queue, SNS topic or S3 bucket" in lines[0]


@pytest.mark.parametrize(
    "destination_arn",
    [
        pytest.param("arn:aws:sqs:us-east-1:123456789012:no-such-queue", id="sqs"),
        pytest.param("arn:aws:sns:us-east-1:123456789012:no-such-topic", id="sns"),
        pytest.param(f"arn:aws:s3:::no-such-bucket-{uuid.uuid4().hex[:8]}", id="s3"),
    ],
)
def test_a_destination_that_does_not_exist_is_refused_at_start_in_one_line(
    harness, capsys, destination_arn
):
    arn = harness.create_stream()

    code = main(
        [
            "run",
            "--stream-arn",
            arn,
            "--handler",
            "esm_handlers.record",
            "--code-dir",
            str(CODE_DIR),
            "--on-failure-destination",
            destination_arn,
        ]
    )

    assert code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"[esm] on-failure destination {destination_arn} is not at the endpoint: "
        "check the ARN and AWS_ENDPOINT_URL"
    ]
