"""scripts/replay.py against the emulator: poison messages (payload inside) and on-failure
records (coordinates only, read back from the stream) re-driven to a handler or the stream;
a message is deleted only when its records are known applied."""

from __future__ import annotations

import base64
import json

import pytest
from queue_messages import dynamodb_poison, kinesis_poison, on_failure_record, peek, send

from processor.contracts import REPLAY_MARKER
from streamline.tools import replay
from streamline.tools.replay import (
    REPLAYED_AT_ATTRIBUTE,
    HandlerTarget,
    Outcome,
    QueueKind,
    StreamTarget,
)

pytestmark = pytest.mark.integration


class RecordingHandler:
    """A handler that keeps every event it is given and reports each record applied, as an
    OrderedProcessor does; fails when told to."""

    def __init__(self, fail: bool = False):
        self.events: list[dict] = []
        self.fail = fail

    def __call__(self, event: dict, context) -> dict:
        assert context.get_remaining_time_in_millis() > 0
        assert event[REPLAY_MARKER] is True
        self.events.append(event)
        if self.fail:
            raise RuntimeError("still broken")
        applied = [i for i in replay.record_ids(event["Records"]) if i]
        return {"batchItemFailures": [], REPLAY_MARKER: {"applied": applied}}

    @property
    def records(self) -> list[dict]:
        return [record for event in self.events for record in event["Records"]]


def to_handler(handler: RecordingHandler) -> HandlerTarget:
    return HandlerTarget(handler, "tests.recording", batch_size=100)


def put_events(kinesis, stack: dict, key: str, count: int) -> list[dict]:
    """Put `count` events of one key; their PutRecord answers (ShardId, SequenceNumber)."""
    return [
        kinesis.put_record(
            StreamName=stack["kinesis_stream_name"],
            PartitionKey=key,
            Data=json.dumps({"key": key, "n": n, "payload": f"p{n}"}).encode(),
        )
        for n in range(1, count + 1)
    ]


def decoded(record: dict) -> dict:
    return json.loads(base64.b64decode(record["kinesis"]["data"]))


@pytest.fixture
def clients(aws_session):
    return {name: aws_session.client(name) for name in ("sqs", "kinesis", "dynamodb")}


def test_a_poison_message_goes_to_the_handler_as_a_lambda_record_then_is_deleted(
    demo_stack, clients
):
    body = {"key": "k-0001", "n": 3, "payload": "abc", "poison": True}
    send(
        clients["sqs"],
        demo_stack["poison_queue_url"],
        kinesis_poison(demo_stack["kinesis_stream_arn"], body, "7", "shardId-000000000001"),
    )
    handler = RecordingHandler()

    summary = replay.replay(
        {QueueKind.POISON: demo_stack["poison_queue_url"]}, to_handler(handler), out=lambda _: None
    )

    assert summary.outcomes == {Outcome.DELETED: 1}
    assert summary.records == 1
    [record] = handler.records
    assert decoded(record) == body
    assert record["eventID"] == "shardId-000000000001:7"
    assert record["eventSourceARN"] == demo_stack["kinesis_stream_arn"]
    assert record["kinesis"]["partitionKey"] == "k-0001"
    assert peek(clients["sqs"], demo_stack["poison_queue_url"]) == []


def test_an_on_failure_batch_is_read_back_from_the_kinesis_shard_start_through_end(
    demo_stack, clients
):
    written = put_events(clients["kinesis"], demo_stack, "k-0002", 6)
    shard_id = written[0]["ShardId"]
    send(
        clients["sqs"],
        demo_stack["on_failure_queue_url"],
        on_failure_record(
            demo_stack["kinesis_stream_arn"],
            shard_id,
            written[1]["SequenceNumber"],
            written[3]["SequenceNumber"],
            3,
        ),
    )
    handler = RecordingHandler()

    summary = replay.replay(
        {QueueKind.ON_FAILURE: demo_stack["on_failure_queue_url"]},
        to_handler(handler),
        out=lambda _: None,
    )

    assert summary.outcomes == {Outcome.DELETED: 1}
    assert [decoded(r)["n"] for r in handler.records] == [2, 3, 4]
    assert [r["kinesis"]["sequenceNumber"] for r in handler.records] == [
        w["SequenceNumber"] for w in written[1:4]
    ]
    assert peek(clients["sqs"], demo_stack["on_failure_queue_url"]) == []


def test_an_on_failure_batch_is_read_back_from_the_dynamodb_stream(
    aws_session, demo_stack, clients
):
    for n in (1, 2, 3):
        clients["dynamodb"].put_item(
            TableName=demo_stack["source_table_name"],
            Item={"pk": {"S": "d-0001"}, "n": {"N": str(n)}, "payload": {"S": f"q{n}"}},
        )
    streams = aws_session.client("dynamodbstreams")
    arn = demo_stack["source_table_stream_arn"]
    shard_id = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(
        StreamArn=arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    on_stream = streams.get_records(ShardIterator=iterator)["Records"]
    sequence_numbers = [r["dynamodb"]["SequenceNumber"] for r in on_stream]
    send(
        clients["sqs"],
        demo_stack["on_failure_queue_url"],
        on_failure_record(
            arn,
            shard_id,
            sequence_numbers[0],
            sequence_numbers[1],
            2,
            batch_info="DDBStreamBatchInfo",
        ),
    )
    handler = RecordingHandler()

    summary = replay.replay(
        {QueueKind.ON_FAILURE: demo_stack["on_failure_queue_url"]},
        to_handler(handler),
        out=lambda _: None,
    )

    assert summary.outcomes == {Outcome.DELETED: 1}
    records = handler.records
    assert [r["eventName"] for r in records] == ["INSERT", "MODIFY"]
    assert [r["dynamodb"]["NewImage"]["n"]["N"] for r in records] == ["1", "2"]
    assert all(r["eventSourceARN"] == arn and r["eventSource"] == "aws:dynamodb" for r in records)
    assert peek(clients["sqs"], demo_stack["on_failure_queue_url"]) == []


def test_a_message_stays_on_the_queue_when_the_handler_fails(demo_stack, clients):
    body = {"key": "k-0003", "n": 1, "payload": "x"}
    send(
        clients["sqs"],
        demo_stack["poison_queue_url"],
        kinesis_poison(demo_stack["kinesis_stream_arn"], body, "1", "shardId-000000000000"),
    )

    summary = replay.replay(
        {QueueKind.POISON: demo_stack["poison_queue_url"]},
        to_handler(RecordingHandler(fail=True)),
        out=lambda _: None,
    )

    assert summary.outcomes == {Outcome.FAILED: 1}
    assert summary.exit_code == replay.ExitCode.FAILED
    assert "still broken" in summary.lines[-1]
    assert len(peek(clients["sqs"], demo_stack["poison_queue_url"])) == 1


def test_dry_run_and_filters_re_drive_nothing_and_keep_every_message(demo_stack, clients):
    for n, key in enumerate(["k-0004", "k-0005"], start=1):
        send(
            clients["sqs"],
            demo_stack["poison_queue_url"],
            kinesis_poison(
                demo_stack["kinesis_stream_arn"],
                {"key": key, "n": 1, "payload": "x"},
                str(n),
                "shardId-000000000000",
            ),
        )
    handler = RecordingHandler()
    queues = {QueueKind.POISON: demo_stack["poison_queue_url"]}

    dry = replay.replay(queues, to_handler(handler), dry_run=True, out=lambda _: None)
    other_error = replay.replay(
        queues, to_handler(handler), error_types=["KeyError"], out=lambda _: None
    )
    one_key = replay.replay(queues, to_handler(handler), keys=["k-0005"], out=lambda _: None)

    assert dry.outcomes == {Outcome.DRY_RUN: 2}
    assert other_error.outcomes == {Outcome.FILTERED: 2}
    assert one_key.outcomes == {Outcome.DELETED: 1, Outcome.FILTERED: 1}
    assert dry.exit_code == other_error.exit_code == one_key.exit_code == replay.ExitCode.OK
    assert [decoded(r)["key"] for r in handler.records] == ["k-0005"]
    left = peek(clients["sqs"], demo_stack["poison_queue_url"])
    assert [json.loads(m["Body"])["partitionKey"] for m in left] == ["k-0004"]


def test_to_stream_puts_a_poison_record_back_on_kinesis(demo_stack, clients, capsys):
    body = {"key": "k-0006", "n": 9, "payload": "again"}
    send(
        clients["sqs"],
        demo_stack["poison_queue_url"],
        kinesis_poison(demo_stack["kinesis_stream_arn"], body, "1", "shardId-000000000000"),
    )

    code = replay.main(["--stack", demo_stack["path"], "--from", "poison", "--to-stream"])

    assert code == 0
    assert "re-drove 1 record(s) to its stream: 1 deleted" in capsys.readouterr().out
    kinesis = clients["kinesis"]
    found = []
    for shard in kinesis.list_shards(StreamName=demo_stack["kinesis_stream_name"])["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=demo_stack["kinesis_stream_name"],
            ShardId=shard["ShardId"],
            ShardIteratorType="TRIM_HORIZON",
        )["ShardIterator"]
        found += kinesis.get_records(ShardIterator=iterator)["Records"]
    assert [(r["PartitionKey"], json.loads(r["Data"])) for r in found] == [("k-0006", body)]


def read_dynamodb_stream(aws_session, stream_arn: str) -> list[dict]:
    streams = aws_session.client("dynamodbstreams")
    records = []
    for shard in streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(
            StreamArn=stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        records += streams.get_records(ShardIterator=iterator)["Records"]
    return records


def test_to_stream_marks_an_unchanged_dynamodb_item_so_its_stream_gets_a_record(
    aws_session, demo_stack, clients
):
    image = {
        "pk": {"S": "d-0009"},
        "n": {"N": "4"},
        "payload": {"S": "z"},
        "blob": {"B": b"\x00\xff"},
        "poison": {"BOOL": True},
    }
    table = demo_stack["source_table_name"]
    clients["dynamodb"].put_item(TableName=table, Item=image)
    [written] = read_dynamodb_stream(aws_session, demo_stack["source_table_stream_arn"])
    # As Lambda delivered it: binary values in base64.
    message = dynamodb_poison(
        demo_stack["source_table_stream_arn"],
        {
            "Keys": {"pk": {"S": "d-0009"}},
            "NewImage": {**image, "blob": {"B": base64.b64encode(b"\x00\xff").decode()}},
        },
        written["dynamodb"]["SequenceNumber"],
    )
    send(clients["sqs"], demo_stack["poison_queue_url"], message)

    summary = replay.replay(
        {QueueKind.POISON: demo_stack["poison_queue_url"]}, StreamTarget(), out=lambda _: None
    )

    assert summary.outcomes == {Outcome.DELETED: 1}
    item = clients["dynamodb"].get_item(TableName=table, Key={"pk": {"S": "d-0009"}})["Item"]
    marker = item.pop(REPLAYED_AT_ATTRIBUTE)
    assert item == image  # nothing else changed
    [_, again] = read_dynamodb_stream(aws_session, demo_stack["source_table_stream_arn"])
    assert again["eventName"] == "MODIFY"
    assert again["dynamodb"]["NewImage"] == {**image, REPLAYED_AT_ATTRIBUTE: marker}
    assert peek(clients["sqs"], demo_stack["poison_queue_url"]) == []


def test_a_truncated_poison_message_is_read_back_from_the_stream(demo_stack, clients):
    written = put_events(clients["kinesis"], demo_stack, "k-0007", 2)
    message = kinesis_poison(
        demo_stack["kinesis_stream_arn"],
        {"key": "k-0007"},
        written[1]["SequenceNumber"],
        written[1]["ShardId"],
    )
    del message["data"]
    message["truncated"] = True
    send(clients["sqs"], demo_stack["poison_queue_url"], message)
    handler = RecordingHandler()

    summary = replay.replay(
        {QueueKind.POISON: demo_stack["poison_queue_url"]}, to_handler(handler), out=lambda _: None
    )

    assert summary.outcomes == {Outcome.DELETED: 1}
    assert [decoded(r) for r in handler.records] == [{"key": "k-0007", "n": 2, "payload": "p2"}]


def test_a_parked_record_replayed_to_an_ordered_processor_is_applied_exactly_once(
    demo_stack, clients
):
    from processor import OrderedProcessor
    from processor.checkpoint import DynamoDBCheckpointStore
    from processor.poison import SqsPoisonSink
    from processor.testing import event, kinesis_record

    broken = {"yes": True}

    def apply(record):
        if broken["yes"]:
            raise RuntimeError("a bug, fixed later")
        n = record.json()["n"]
        return [
            {
                "Update": {
                    "TableName": demo_stack["sink_table_name"],
                    "Key": {"pk": {"S": record.partition_key}},
                    "UpdateExpression": "ADD applied :n, times :one",
                    "ExpressionAttributeValues": {":n": {"NS": [str(n)]}, ":one": {"N": "1"}},
                }
            }
        ]

    processor = OrderedProcessor(
        apply,
        checkpoints=DynamoDBCheckpointStore(demo_stack["checkpoint_table_name"]),
        poison=SqsPoisonSink(demo_stack["poison_queue_url"]),
        max_attempts=1,
    )
    body = {"key": "k-0009", "n": 1, "payload": "p"}
    processor.process(
        event(kinesis_record("k-0009", 5, body, arn=demo_stack["kinesis_stream_arn"]))
    )
    [parked] = peek(clients["sqs"], demo_stack["poison_queue_url"])
    broken["yes"] = False
    send(clients["sqs"], demo_stack["poison_queue_url"], json.loads(parked["Body"]))  # a copy
    target = HandlerTarget(lambda e, c: processor.process(e, c), "ordered", batch_size=100)

    summary = replay.replay(
        {QueueKind.POISON: demo_stack["poison_queue_url"]}, target, out=lambda _: None
    )

    # The first copy is applied, the second is reported alreadyReplayed: both go.
    assert summary.outcomes == {Outcome.DELETED: 2}
    row = clients["dynamodb"].get_item(
        TableName=demo_stack["sink_table_name"], Key={"pk": {"S": "k-0009"}}
    )["Item"]
    assert (row["applied"], row["times"]) == ({"NS": ["1"]}, {"N": "1"})
    assert peek(clients["sqs"], demo_stack["poison_queue_url"]) == []
