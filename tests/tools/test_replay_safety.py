"""replay.py never deletes what was not applied and never applies twice (issue 10 items 1-5,
issue 9 bug 4), against the emulator: an OrderedProcessor on the stack's checkpoint table
replays, and --to-stream writes to real streams and tables."""

from __future__ import annotations

import base64
import json

import pytest
from queue_messages import dynamodb_poison, kinesis_poison, on_failure_record, peek, send

from esm.rules import lane_of
from processor import OrderedProcessor
from processor.checkpoint import DynamoDBCheckpointStore
from processor.contracts import REPLAY_MARKER, REPLAY_SUB_SEQUENCE_NUMBER
from processor.poison import SqsPoisonSink
from processor.testing import event, kinesis_record, kpl_aggregate
from streamline.tools import replay
from streamline.tools.replay import ExitCode, HandlerTarget, Outcome, QueueKind, StreamTarget

pytestmark = pytest.mark.integration


# --- helpers -------------------------------------------------------------------------------


@pytest.fixture
def clients(aws_session):
    return {name: aws_session.client(name) for name in ("sqs", "kinesis", "dynamodb")}


def bodies(sqs, queue_url: str) -> list[dict]:
    """The bodies of every message on the queue, left there."""
    return [json.loads(message["Body"]) for message in peek(sqs, queue_url)]


def put(kinesis, stream_name: str, key: str, n: int) -> dict:
    body = {"key": key, "n": n, "payload": f"p{n}"}
    answer = kinesis.put_record(
        StreamName=stream_name, PartitionKey=key, Data=json.dumps(body).encode()
    )
    return {"body": body, **answer}


def live_record(stack: dict, written: dict) -> dict:
    """The Lambda record the ESM delivers for a record put with `put`."""
    return kinesis_record(
        written["body"]["key"],
        written["SequenceNumber"],
        written["body"],
        shard_id=written["ShardId"],
        arn=stack["kinesis_stream_arn"],
    )


def stream_records(kinesis, stream_name: str) -> list[dict]:
    found = []
    for shard in kinesis.list_shards(StreamName=stream_name)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream_name, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        found += kinesis.get_records(ShardIterator=iterator, Limit=10_000)["Records"]
    return found


class Sink:
    """A record handler that applies `n` to the sink row of its key (in the checkpoint's
    transaction) and fails the n's in `failing`."""

    def __init__(self, dynamodb, table_name: str, failing=()):
        self.dynamodb = dynamodb
        self.table_name = table_name
        self.failing = set(failing)

    def __call__(self, record):
        n = record.json()["n"]
        if n in self.failing:
            raise RuntimeError(f"n={n} fails")
        return [
            {
                "Update": {
                    "TableName": self.table_name,
                    "Key": {"pk": {"S": record.partition_key}},
                    "UpdateExpression": "ADD applied :n, times :one",
                    "ExpressionAttributeValues": {":n": {"NS": [str(n)]}, ":one": {"N": "1"}},
                }
            }
        ]

    def applied(self, key: str) -> tuple[set[int], int]:
        """The n's applied for `key`, and how many applications there were."""
        item = self.dynamodb.get_item(
            TableName=self.table_name, Key={"pk": {"S": key}}, ConsistentRead=True
        ).get("Item", {})
        return {int(n) for n in item.get("applied", {}).get("NS", [])}, int(
            item.get("times", {}).get("N", "0")
        )


@pytest.fixture
def sink(clients, demo_stack) -> Sink:
    return Sink(clients["dynamodb"], demo_stack["sink_table_name"])


@pytest.fixture
def processor(demo_stack, sink) -> OrderedProcessor:
    return OrderedProcessor(
        sink,
        checkpoints=DynamoDBCheckpointStore(demo_stack["checkpoint_table_name"]),
        poison=SqsPoisonSink(demo_stack["poison_queue_url"]),
        max_attempts=1,
    )


def to(processor: OrderedProcessor) -> HandlerTarget:
    return HandlerTarget(lambda e, c: processor.process(e, c), "ordered", batch_size=100)


def quiet(_line: str) -> None:
    pass


# --- item 1: deleted only when known applied -------------------------------------------------


def test_an_on_failure_batch_after_a_function_error_is_kept_once_its_key_moved_on(
    clients, demo_stack, processor, sink
):
    written = [
        put(clients["kinesis"], demo_stack["kinesis_stream_name"], "k-1", n)
        for n in (1, 2, 3, 4, 5)
    ]
    # The function crashed on 1..3 before the processor saw them; the ESM gave up; 4..5 applied.
    processor.process(event(*(live_record(demo_stack, w) for w in written[3:])))
    queue = demo_stack["on_failure_queue_url"]
    send(
        clients["sqs"],
        queue,
        on_failure_record(
            demo_stack["kinesis_stream_arn"],
            written[0]["ShardId"],
            written[0]["SequenceNumber"],
            written[2]["SequenceNumber"],
            3,
            "Unhandled",
        ),
    )

    summary = replay.replay({QueueKind.ON_FAILURE: queue}, to(processor), out=quiet)

    assert summary.outcomes == {Outcome.UNCONFIRMED: 1}
    assert summary.exit_code is ExitCode.UNCONFIRMED
    [line] = summary.lines
    assert "UNCONFIRMED" in line and "3 appliedInOrder" in line and "(Unhandled)" in line
    assert len(bodies(clients["sqs"], queue)) == 1  # the only trace of 1..3 is kept
    assert sink.applied("k-1") == ({4, 5}, 2)


def test_an_on_failure_batch_whose_function_returned_is_applied_once_then_deleted(
    clients, demo_stack, processor, sink
):
    written = [
        put(clients["kinesis"], demo_stack["kinesis_stream_name"], "k-2", n)
        for n in (1, 2, 3, 4, 5)
    ]
    sink.failing = {2}
    processor.max_attempts = 5
    # 1 applied, 2 failed, 3 blocked: the function returned batchItemFailures, the ESM gave up.
    processor.process(event(*(live_record(demo_stack, w) for w in written[:3])))
    sink.failing.clear()
    processor.process(event(*(live_record(demo_stack, w) for w in written[3:])))
    queue = demo_stack["on_failure_queue_url"]
    send(
        clients["sqs"],
        queue,
        on_failure_record(
            demo_stack["kinesis_stream_arn"],
            written[0]["ShardId"],
            written[0]["SequenceNumber"],
            written[2]["SequenceNumber"],
            3,
            None,
        ),
    )

    summary = replay.replay({QueueKind.ON_FAILURE: queue}, to(processor), out=quiet)

    assert summary.outcomes == {Outcome.DELETED: 1}, summary.lines
    assert bodies(clients["sqs"], queue) == []
    assert sink.applied("k-2") == ({1, 2, 3, 4, 5}, 5)


def test_a_handler_without_a_replay_report_keeps_its_messages_unless_trusted(clients, demo_stack):
    queue = demo_stack["poison_queue_url"]
    body = {"key": "k-3", "n": 1, "payload": "x"}
    send(
        clients["sqs"],
        queue,
        kinesis_poison(demo_stack["kinesis_stream_arn"], body),
    )
    plain = HandlerTarget(lambda e, c: {"batchItemFailures": []}, "plain", batch_size=10)

    untrusted = replay.replay({QueueKind.POISON: queue}, plain, out=quiet)
    trusted = replay.replay({QueueKind.POISON: queue}, plain, trust_handler=True, out=quiet)

    assert untrusted.outcomes == {Outcome.UNCONFIRMED: 1}
    assert REPLAY_MARKER in untrusted.lines[0] and "--trust-handler" in untrusted.lines[0]
    assert trusted.outcomes == {Outcome.DELETED: 1}
    assert bodies(clients["sqs"], queue) == []


def test_a_message_whose_record_fails_again_holds_its_keys_later_messages(
    clients, demo_stack, processor, sink
):
    written = [put(clients["kinesis"], demo_stack["kinesis_stream_name"], "k-4", n) for n in (1, 2)]
    sink.failing = {1, 2}
    processor.process(event(*(live_record(demo_stack, w) for w in written)))  # both parked
    sink.failing = {1}  # 1 still broken, 2 fixed

    summary = replay.replay(
        {QueueKind.POISON: demo_stack["poison_queue_url"]}, to(processor), out=quiet
    )

    assert summary.outcomes == {Outcome.FAILED: 1, Outcome.HELD: 1}
    assert "HELD" in summary.lines[1] and "k-4" in summary.lines[1]
    assert sink.applied("k-4") == (set(), 0)  # 2 waits for 1: the key's order holds
    assert len(bodies(clients["sqs"], demo_stack["poison_queue_url"])) == 2


# --- item 2: --to-stream never rolls a DynamoDB item back ----------------------------------


def parked_item(image: dict, event_name: str) -> dict:
    """The stream record of a write that left the item as `image` (REMOVE: that removed it)."""
    stream_record = {"Keys": {"pk": image["pk"]}}
    stream_record["OldImage" if event_name == "REMOVE" else "NewImage"] = image
    return stream_record


PARKED = {"pk": {"S": "d-7"}, "n": {"N": "7"}, "poison": {"BOOL": True}}
NEWER = {"pk": {"S": "d-7"}, "n": {"N": "20"}, "payload": {"S": "later"}}


@pytest.mark.parametrize(
    ("event_name", "now", "reason"),
    [
        pytest.param("MODIFY", NEWER, "changed after this record", id="moved-on-since"),
        pytest.param("INSERT", None, "was deleted after this record", id="deleted-since"),
        pytest.param("REMOVE", NEWER, "a REMOVE cannot be put back", id="remove-re-created"),
    ],
)
def test_to_stream_refuses_to_roll_a_dynamodb_item_back(
    clients, demo_stack, capsys, event_name, now, reason
):
    table = demo_stack["source_table_name"]
    if now is not None:
        clients["dynamodb"].put_item(TableName=table, Item=now)
    send(
        clients["sqs"],
        demo_stack["poison_queue_url"],
        dynamodb_poison(demo_stack["source_table_stream_arn"], parked_item(PARKED, event_name)),
    )

    code = replay.main(["--stack", demo_stack["path"], "--from", "poison", "--to-stream"])

    assert code == ExitCode.REFUSED
    out = capsys.readouterr().out
    assert "REFUSED" in out and reason in out and f'{{"pk": "d-7"}} of {table}' in out
    item = clients["dynamodb"].get_item(TableName=table, Key={"pk": {"S": "d-7"}}).get("Item")
    assert item == now  # untouched
    assert len(bodies(clients["sqs"], demo_stack["poison_queue_url"])) == 1


# --- item 3 / issue 9 bug 4: a KPL sub-record keeps its position ----------------------------


@pytest.mark.parametrize(
    "truncated",
    [pytest.param(False, id="payload-inside"), pytest.param(True, id="truncated-read-back")],
)
def test_a_parked_kpl_sub_record_is_replayed_at_its_own_position_and_applied(
    clients, demo_stack, processor, sink, truncated
):
    user_records = [
        ("k-5", json.dumps({"key": "k-5", "n": n, "payload": "p"}).encode()) for n in (1, 2, 3)
    ]
    aggregate = kpl_aggregate(user_records)
    written = clients["kinesis"].put_record(
        StreamName=demo_stack["kinesis_stream_name"], PartitionKey="k-5", Data=aggregate
    )
    sink.failing = {2}
    processor.process(
        event(
            kinesis_record(
                "k-5",
                written["SequenceNumber"],
                aggregate,
                shard_id=written["ShardId"],
                arn=demo_stack["kinesis_stream_arn"],
            )
        )
    )  # 1 and 3 applied, 2 parked at (seq, 1)
    queue = demo_stack["poison_queue_url"]
    [parked] = bodies(clients["sqs"], queue)
    assert parked["subSequenceNumber"] == 1
    if truncated:  # only the coordinates: the user record is read back out of its aggregate
        clients["sqs"].purge_queue(QueueUrl=queue)
        del parked["data"]
        send(clients["sqs"], queue, {**parked, "truncated": True})
    sink.failing.clear()
    seen = []

    def handler(e, c):
        seen.extend(e["Records"])
        return processor.process(e, c)

    summary = replay.replay(
        {QueueKind.POISON: queue}, HandlerTarget(handler, "ordered", 100), out=quiet
    )

    assert summary.outcomes == {Outcome.DELETED: 1}, summary.lines
    [record] = seen
    assert record["kinesis"][REPLAY_SUB_SEQUENCE_NUMBER] == 1
    assert json.loads(base64.b64decode(record["kinesis"]["data"]))["n"] == 2
    assert sink.applied("k-5") == ({1, 2, 3}, 3)
    assert bodies(clients["sqs"], queue) == []


# --- item 4: an on-failure batch under ParallelizationFactor > 1 ----------------------------


@pytest.fixture
def one_shard_stream(aws_session, unique_name):
    kinesis = aws_session.client("kinesis")
    name = f"{unique_name[-30:].strip('-')}-1s"
    kinesis.create_stream(StreamName=name, ShardCount=1)
    kinesis.get_waiter("stream_exists").wait(StreamName=name)
    arn = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"]
    yield {"name": name, "arn": arn}
    kinesis.delete_stream(StreamName=name, EnforceConsumerDeletion=True)


def two_lanes() -> tuple[str, str]:
    """Two keys in different lanes of a mapping with ParallelizationFactor 2."""
    keys = [f"lane-key-{n}" for n in range(20)]
    first = keys[0]
    other = next(k for k in keys if lane_of(k, 2) != lane_of(first, 2))
    return first, other


def lanes_batch(clients, stream: dict, queue: str) -> list[str]:
    """10 records of key A and 24 of key B interleaved on one shard; A's 10 were one batch
    of its lane, given up by the ESM. Returns A's data, in order."""
    a, b = two_lanes()
    entries = []
    for i in range(34):
        key = a if i % 3 == 0 and i < 30 else b
        entries.append({"PartitionKey": key, "Data": f"{key}#{i}".encode()})
    results = clients["kinesis"].put_records(StreamName=stream["name"], Records=entries)["Records"]
    mine = [(e, r) for e, r in zip(entries, results, strict=True) if e["PartitionKey"] == a]
    assert len(mine) == 10
    send(
        clients["sqs"],
        queue,
        on_failure_record(
            stream["arn"],
            mine[0][1]["ShardId"],
            mine[0][1]["SequenceNumber"],
            mine[-1][1]["SequenceNumber"],
            10,
            None,
        ),
    )
    return [e["Data"].decode() for e, _ in mine]


def test_to_stream_puts_only_the_lanes_records_of_an_on_failure_batch(
    clients, demo_stack, one_shard_stream
):
    queue = demo_stack["on_failure_queue_url"]
    batch = lanes_batch(clients, one_shard_stream, queue)

    summary = replay.replay(
        {QueueKind.ON_FAILURE: queue}, StreamTarget(), parallelization_factor=2, out=quiet
    )

    assert summary.outcomes == {Outcome.DELETED: 1}, summary.lines
    after = stream_records(clients["kinesis"], one_shard_stream["name"])
    assert [r["Data"].decode() for r in after[34:]] == batch  # 10 put again, not 34


def test_the_parallelization_factor_is_read_from_the_functions_mapping(
    aws_session, clients, demo_stack, one_shard_stream, unique_name
):
    import io
    import zipfile

    iam, lambda_ = aws_session.client("iam"), aws_session.client("lambda")
    role = iam.create_role(
        RoleName=f"replay-{unique_name[-20:]}",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "lambda.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        ),
    )["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return None\n")
    function = lambda_.create_function(
        FunctionName=f"replay-{unique_name[-20:]}",
        Runtime="python3.12",
        Role=role,
        Handler="handler.handler",
        Code={"ZipFile": code.getvalue()},
    )["FunctionArn"]
    lambda_.create_event_source_mapping(
        FunctionName=function,
        EventSourceArn=one_shard_stream["arn"],
        StartingPosition="TRIM_HORIZON",
        ParallelizationFactor=2,
    )
    queue = demo_stack["on_failure_queue_url"]
    batch = lanes_batch(clients, one_shard_stream, queue)
    [message] = bodies(clients["sqs"], queue)
    clients["sqs"].purge_queue(QueueUrl=queue)
    message["requestContext"]["functionArn"] = function
    send(clients["sqs"], queue, message)

    summary = replay.replay({QueueKind.ON_FAILURE: queue}, StreamTarget(), out=quiet)

    assert summary.outcomes == {Outcome.DELETED: 1}, summary.lines
    after = stream_records(clients["kinesis"], one_shard_stream["name"])
    assert [r["Data"].decode() for r in after[34:]] == batch


@pytest.mark.parametrize(
    "target", [pytest.param("stream", id="to-stream"), pytest.param("handler", id="to-handler")]
)
def test_an_on_failure_batch_that_cannot_be_told_apart_is_refused(
    clients, demo_stack, one_shard_stream, target
):
    queue = demo_stack["on_failure_queue_url"]
    lanes_batch(clients, one_shard_stream, queue)
    called = []
    chosen = (
        StreamTarget()
        if target == "stream"
        else HandlerTarget(lambda e, c: called.append(e), "recording", 100)
    )

    summary = replay.replay({QueueKind.ON_FAILURE: queue}, chosen, out=quiet)  # no mapping

    assert summary.outcomes == {Outcome.REFUSED: 1}
    assert summary.exit_code is ExitCode.REFUSED
    assert "28 records for a batch of 10" in summary.lines[0]
    assert "--parallelization-factor" in summary.lines[0]
    assert len(stream_records(clients["kinesis"], one_shard_stream["name"])) == 34
    assert called == []
    assert len(bodies(clients["sqs"], queue)) == 1


# --- item 5: a partial --to-stream re-drive is refused -------------------------------------


def test_a_partial_to_stream_re_drive_is_refused_so_a_full_one_puts_each_record_once(
    clients, demo_stack, one_shard_stream
):
    kinesis = clients["kinesis"]
    written = [
        put(kinesis, one_shard_stream["name"], key, n)
        for n, key in enumerate(["k-a", "k-b", "k-a", "k-b", "k-a"], start=1)
    ]
    queue = demo_stack["on_failure_queue_url"]
    send(
        clients["sqs"],
        queue,
        on_failure_record(
            one_shard_stream["arn"],
            written[0]["ShardId"],
            written[0]["SequenceNumber"],
            written[-1]["SequenceNumber"],
            5,
            None,
        ),
    )
    queues = {QueueKind.ON_FAILURE: queue}

    partial = replay.replay(queues, StreamTarget(), keys=["k-a"], out=quiet)
    full = replay.replay(queues, StreamTarget(), out=quiet)

    assert partial.outcomes == {Outcome.REFUSED: 1}
    assert "--key selects 3 of its 5 records" in partial.lines[0]
    assert full.outcomes == {Outcome.DELETED: 1}
    put_again = [
        json.loads(r["Data"]) for r in stream_records(kinesis, one_shard_stream["name"])[5:]
    ]
    assert put_again == [w["body"] for w in written]  # each once, in order
    assert bodies(clients["sqs"], queue) == []


# --- a run that cannot or does not re-drive deletes nothing ----------------------------------


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        pytest.param(["--to-stream", "--visibility-timeout", "0"], ExitCode.UNUSABLE,
                     id="bad-number"),
        pytest.param(["--to-stream", "--limit", "nan"], ExitCode.UNUSABLE, id="nan"),
        pytest.param(["--to-stream", "--zz-no-such-flag"], ExitCode.UNUSABLE, id="unknown-flag"),
        pytest.param(["--to-stream", "--key", ""], ExitCode.UNUSABLE, id="empty-key"),
        pytest.param(["--to-stream", "--stack", "{corrupt}"], ExitCode.UNUSABLE,
                     id="corrupt-stack-file"),
        pytest.param(["--to-handler", "no_such_module.handler"], ExitCode.UNUSABLE,
                     id="handler-not-importable"),
        pytest.param(["--to-handler", "replay_handlers.failing_handler"], ExitCode.FAILED,
                     id="handler-fails"),
    ],
)  # fmt: skip
def test_a_run_with_bad_arguments_or_a_failing_handler_deletes_no_message(
    clients, demo_stack, tmp_path, capsys, argv, code
):
    sqs, queue = clients["sqs"], demo_stack["poison_queue_url"]
    for key in ("k-8", "k-9"):  # a good --to-stream run would delete both
        send(sqs, queue, kinesis_poison(demo_stack["kinesis_stream_arn"], {"key": key, "n": 1}))
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text('{"poison_queue_url": ')
    on_failure = demo_stack["on_failure_queue_url"]
    queues = ["--poison-queue-url", queue, "--on-failure-queue-url", on_failure]

    try:
        exited = replay.main([*queues, *(a.format(corrupt=corrupt) for a in argv)])
    except SystemExit as exc:  # the parser's refusals
        exited = exc.code

    assert exited == code, capsys.readouterr().err
    assert sorted(b["partitionKey"] for b in bodies(sqs, queue)) == ["k-8", "k-9"]
