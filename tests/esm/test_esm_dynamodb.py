"""Conformance: a DynamoDB stream as the event source.

References (Lambda developer guide): with-ddb.html, services-ddb-batchfailurereporting.html,
services-dynamodb-errors.html
"""

from __future__ import annotations

import base64
import json
import time

from conftest import mapping

from esm.onfailure import iso_utc
from processor.aws import parse_arn


def _stream_records(harness, stream_arn):
    streams = harness.client("dynamodbstreams")
    shard_id = streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"][0][
        "ShardId"
    ]
    iterator = streams.get_shard_iterator(
        StreamArn=stream_arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    return shard_id, streams.get_records(ShardIterator=iterator)["Records"]


def test_dynamodb_event_has_lambdas_shape(harness, table):
    name, stream_arn = table
    dynamodb = harness.client("dynamodb")
    dynamodb.put_item(TableName=name, Item={"pk": {"S": "a"}, "v": {"N": "1"}, "b": {"B": b"xy"}})
    dynamodb.put_item(TableName=name, Item={"pk": {"S": "a"}, "v": {"N": "2"}})
    dynamodb.delete_item(TableName=name, Key={"pk": {"S": "a"}})
    shard_id, raw = _stream_records(harness, stream_arn)
    function = harness.create_function("esm_handlers.record")

    harness.run(function, [mapping(stream_arn)])

    (invocation,) = harness.invocations()
    assert invocation["sequenceNumbers"] == [r["dynamodb"]["SequenceNumber"] for r in raw]
    first = invocation["first"]
    created = first["dynamodb"].pop("ApproximateCreationDateTime")
    assert created == float(int(raw[0]["dynamodb"]["ApproximateCreationDateTime"].timestamp()))
    assert first == {
        "eventID": raw[0]["eventID"],
        "eventName": "INSERT",
        "eventVersion": raw[0]["eventVersion"],
        "eventSource": "aws:dynamodb",
        "awsRegion": parse_arn(stream_arn).region,
        "dynamodb": {
            "Keys": {"pk": {"S": "a"}},
            "NewImage": {
                "pk": {"S": "a"},
                "v": {"N": "1"},
                "b": {"B": base64.b64encode(b"xy").decode()},
            },
            "SequenceNumber": raw[0]["dynamodb"]["SequenceNumber"],
            "SizeBytes": raw[0]["dynamodb"]["SizeBytes"],
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
        "eventSourceARN": stream_arn,
    }
    assert [json.loads(d) for d in invocation["data"]] == [
        {"pk": {"S": "a"}, "v": {"N": "1"}, "b": {"B": "eHk="}},
        {"pk": {"S": "a"}, "v": {"N": "2"}},
        {"pk": {"S": "a"}},
    ]


def test_dynamodb_retry_exhaustion_sends_ddb_stream_batch_info(harness, table):
    name, stream_arn = table
    dynamodb = harness.client("dynamodb")
    for i, value in enumerate(["ok", "bad", "ok"]):
        dynamodb.put_item(TableName=name, Item={"pk": {"S": f"item-{i}"}, "v": {"S": value}})
    shard_id, raw = _stream_records(harness, stream_arn)
    queue_url, queue_arn = harness.create_queue()
    function = harness.create_function("esm_handlers.fail_on_bad")

    harness.run(
        function,
        [mapping(stream_arn, maximum_retry_attempts=1, on_failure_destination_arn=queue_arn)],
    )

    assert len(harness.invocations()) == 2
    (failure,) = harness.messages(queue_url)
    assert failure["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert failure["requestContext"]["approximateInvokeCount"] == 2
    assert failure["responseContext"]["functionError"] == "Unhandled"
    assert "KinesisBatchInfo" not in failure
    # DynamoDB arrival times have whole seconds
    first_arrival = raw[0]["dynamodb"]["ApproximateCreationDateTime"].timestamp()
    last_arrival = raw[-1]["dynamodb"]["ApproximateCreationDateTime"].timestamp()
    assert failure["DDBStreamBatchInfo"] == {
        "shardId": shard_id,
        "startSequenceNumber": raw[0]["dynamodb"]["SequenceNumber"],
        "endSequenceNumber": raw[-1]["dynamodb"]["SequenceNumber"],
        "approximateArrivalOfFirstRecord": iso_utc(first_arrival, milliseconds=False),
        "approximateArrivalOfLastRecord": iso_utc(last_arrival, milliseconds=False),
        "batchSize": 3,
        "streamArn": stream_arn,
    }


def test_dynamodb_batch_item_failures_name_sequence_numbers(harness, table):
    name, stream_arn = table
    dynamodb = harness.client("dynamodb")
    for i, value in enumerate(["ok", "ok", "bad", "ok"]):
        dynamodb.put_item(TableName=name, Item={"pk": {"S": f"item-{i}"}, "v": {"S": value}})
    queue_url, queue_arn = harness.create_queue()
    function = harness.create_function("esm_handlers.report_bad")

    harness.run(
        function,
        [
            mapping(
                stream_arn,
                report_batch_item_failures=True,
                maximum_retry_attempts=0,
                on_failure_destination_arn=queue_arn,
            )
        ],
    )

    (invocation,) = harness.invocations()
    (failure,) = harness.messages(queue_url)
    info = failure["DDBStreamBatchInfo"]
    assert info["startSequenceNumber"] == invocation["sequenceNumbers"][2]
    assert info["endSequenceNumber"] == invocation["sequenceNumbers"][3]
    assert info["batchSize"] == 2
    assert failure["responseContext"]["functionError"] is None


def test_dynamodb_checkpoint_table_resumes_after_the_last_batch(harness, table):
    name, stream_arn = table
    dynamodb = harness.client("dynamodb")
    dynamodb.put_item(TableName=name, Item={"pk": {"S": "first"}})
    function = harness.create_function("esm_handlers.record")
    checkpoints = f"{harness.name}-checkpoints"

    harness.run(function, [mapping(stream_arn)], checkpoint_table=checkpoints, state_dir=None)
    dynamodb.put_item(TableName=name, Item={"pk": {"S": "second"}})
    time.sleep(0.05)
    harness.run(function, [mapping(stream_arn)], checkpoint_table=checkpoints, state_dir=None)

    assert [json.loads(d)["pk"]["S"] for d in harness.delivered()] == ["first", "second"]
    (item,) = dynamodb.scan(TableName=checkpoints)["Items"]
    assert item["sequenceNumber"]["S"] == harness.invocations()[-1]["sequenceNumbers"][-1]
    assert not harness.state_dir.exists()
