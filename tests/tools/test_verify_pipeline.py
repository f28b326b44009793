"""load.py → the demo handler → verify.py, against the emulator, where the verdict used to be
false: a producer's retried PutRecords applied twice, a correct replay failing verify, two
load runs against one stack colliding. The stream is drained by feeding its records, shaped
as Lambda delivers them, to the demo handler's OrderedProcessor (the ESM runner's path is
tests/e2e's)."""

from __future__ import annotations

import base64
import json
import threading

import pytest
from botocore.exceptions import ClientError

from processor import OrderedProcessor
from processor.checkpoint import DynamoDBCheckpointStore
from processor.contracts import REPLAY_MARKER
from processor.handler import SinkAction, SinkApplier, SinkFold, SinkRow, sink_action
from processor.poison import SqsPoisonSink
from processor.testing import event, kinesis_record
from streamline.tools import load, verify

# --- the handler's rule (no server) ----------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "replay", "row", "expected"),
    [
        pytest.param(5, False, SinkRow(last_n=4), SinkAction.APPLY, id="next-event"),
        pytest.param(1, False, SinkRow(), SinkAction.APPLY, id="first-event"),
        pytest.param(4, False, SinkRow(last_n=4), SinkAction.PRODUCER_DUPLICATE, id="same-n"),
        pytest.param(2, False, SinkRow(last_n=4), SinkAction.PRODUCER_DUPLICATE, id="older-n"),
        pytest.param(
            9,
            False,
            SinkRow(last_n=4, replayed_n=frozenset({9})),
            SinkAction.PRODUCER_DUPLICATE,
            id="applied-by-a-replay",
        ),
        pytest.param(2, True, SinkRow(last_n=4), SinkAction.REPLAY, id="parked-replayed"),
        pytest.param(7, True, SinkRow(last_n=4), SinkAction.REPLAY, id="replayed-ahead"),
        pytest.param(
            2,
            True,
            SinkRow(last_n=4, replayed_n=frozenset({2})),
            SinkAction.ALREADY_REPLAYED,
            id="replayed-twice",
        ),
    ],
)
def test_the_sink_keeps_its_promise_per_produced_event(n, replay, row, expected):
    assert sink_action(n, replay, row) is expected


# --- helpers -----------------------------------------------------------------------------------


class Clients:
    def __init__(self, aws_session):
        self.kinesis = aws_session.client("kinesis")
        self.dynamodb = aws_session.client("dynamodb")
        self.sqs = aws_session.client("sqs")


@pytest.fixture
def clients(aws_session) -> Clients:
    return Clients(aws_session)


class RecordingLog:
    def __init__(self):
        self.warnings: list[tuple[str, dict]] = []

    def warning(self, message: str, extra: dict | None = None) -> None:
        self.warnings.append((message, extra or {}))


@pytest.fixture(params=["keyed-state", "per-record"])
def sink_mode(request) -> str:
    """The demo handler's two shapes: its keyed-state fold (what the Lambda runs) and the
    per-record applier; every pipeline test holds for both."""
    return request.param


def demo_processor(
    stack: dict, clients: Clients, log: RecordingLog | None = None, mode: str = "keyed-state"
):
    """The demo handler's processor, parking at the first failure."""
    checkpoints = DynamoDBCheckpointStore(
        stack["checkpoint_table_name"], boto3_client=clients.dynamodb
    )
    poison = SqsPoisonSink(stack["poison_queue_url"], boto3_client=clients.sqs)
    if mode == "keyed-state":
        fold = SinkFold(stack["sink_table_name"], log=log)
        return OrderedProcessor(
            fold,
            checkpoints=checkpoints,
            poison=poison,
            max_attempts=1,
            keyed_state=True,
            max_concurrency=8,
            state_effects=fold.row_update,
        )
    return OrderedProcessor(
        SinkApplier(stack["sink_table_name"], boto3_client=clients.dynamodb, log=log),
        checkpoints=checkpoints,
        poison=poison,
        max_attempts=1,
    )


def drain(stack: dict, clients: Clients, processor: OrderedProcessor) -> None:
    """Every record on the stream, shard by shard from the start, in batches of 100."""
    stream = stack["kinesis_stream_name"]
    for shard in clients.kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = clients.kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while True:
            response = clients.kinesis.get_records(ShardIterator=iterator, Limit=100)
            if not response["Records"]:
                break
            records = [
                kinesis_record(
                    r["PartitionKey"],
                    r["SequenceNumber"],
                    r["Data"],
                    shard_id=shard["ShardId"],
                    arn=stack["kinesis_stream_arn"],
                )
                for r in response["Records"]
            ]
            assert processor.process(event(*records)) == {"batchItemFailures": []}
            iterator = response["NextShardIterator"]


def poison_messages(clients: Clients, stack: dict) -> list[dict]:
    return verify.peek_queue(clients.sqs, stack["poison_queue_url"])


def replay_to(processor: OrderedProcessor, messages: list[dict]) -> list[dict]:
    """What a replay tool does with Kinesis poison messages: one replay-marked Lambda event
    per shard; the batch item failures of all of them."""
    by_shard: dict[tuple[str, str], list[dict]] = {}
    for message in messages:
        body = json.loads(message["Body"])
        record = kinesis_record(
            body["partitionKey"],
            body["sequenceNumber"],
            base64.b64decode(body["data"]),
            shard_id=body["shardId"],
            arn=body["eventSourceARN"],
        )
        by_shard.setdefault((body["eventSourceARN"], body["shardId"]), []).append(record)
    failures = []
    for records in by_shard.values():
        records.sort(key=lambda r: int(r["kinesis"]["sequenceNumber"]))
        response = processor.process({**event(*records), REPLAY_MARKER: True})
        failures += response["batchItemFailures"]
    return failures


def delete(clients: Clients, stack: dict, messages: list[dict]) -> None:
    for message in messages:
        clients.sqs.delete_message(
            QueueUrl=stack["poison_queue_url"], ReceiptHandle=message["ReceiptHandle"]
        )


def receive_all(clients: Clients, stack: dict) -> list[dict]:
    """The poison messages, received (hidden for a minute) so they can be deleted."""
    received: dict[str, dict] = {}
    while True:
        batch = clients.sqs.receive_message(
            QueueUrl=stack["poison_queue_url"], MaxNumberOfMessages=10, VisibilityTimeout=60
        ).get("Messages", [])
        if not batch:
            return list(received.values())
        received.update((m["MessageId"], m) for m in batch)


def run_load(stack: dict, manifest, *extra: str, session=None) -> int:
    return load.main(
        [
            "--stack",
            stack["path"],
            "--source",
            "kinesis",
            "--workers",
            "1",
            "--manifest",
            str(manifest),
            *extra,
        ],
        session=session,
    )


def run_verify(stack: dict, manifest) -> int:
    return verify.main(["--stack", stack["path"], "--manifest", str(manifest), "--no-wait"])


# --- producer duplicates -----------------------------------------------------------------------


class LoseResponses:
    """The first `calls` PutRecords requests are written, then their response is 'lost':
    botocore's retry handler is told to send the same request again, as after a 5xx or a
    connection reset that came after the stream accepted the records."""

    def __init__(self, session, calls: int):
        self.left = calls
        self.lost: list[int] = []  # records in each request whose response was lost
        self.lock = threading.Lock()
        session.events.register("needs-retry.kinesis.PutRecords", self.needs_retry)

    def needs_retry(self, response, attempts, request_dict, **_):
        if response is None or attempts > 1:
            return None
        with self.lock:
            if not self.left:
                return None
            self.left -= 1
            self.lost.append(len(json.loads(request_dict["body"])["Records"]))
        return 0  # retry at once


@pytest.mark.integration
def test_a_producer_retry_is_skipped_once_and_reported_apart_from_pipeline_duplicates(
    aws_session, demo_stack, clients, tmp_path, capsys, sink_mode
):
    import boto3

    session = boto3.Session()
    lost = LoseResponses(session, calls=2)
    manifest = tmp_path / "manifest.json"
    assert run_load(demo_stack, manifest, "--count", "40", "--keys", "4", session=session) == 0
    duplicates = sum(lost.lost)
    assert duplicates == 8  # two requests of one event per key, each on the stream twice
    log = RecordingLog()

    drain(demo_stack, clients, demo_processor(demo_stack, clients, log, sink_mode))
    code = run_verify(demo_stack, manifest)

    out = capsys.readouterr().out
    assert code == verify.ExitCode.OK, out
    assert "40 applied in order, 0 parked, 0 lost, 0 duplicated" in out
    assert f"{duplicates} producer duplicates skipped" in out
    skipped = [extra for message, extra in log.warnings if message == "producer duplicate skipped"]
    assert len(skipped) == duplicates and all(e["n"] <= e["last_n"] for e in skipped)
    rows = clients.dynamodb.scan(TableName=demo_stack["sink_table_name"])["Items"]
    assert sum(int(r.get("producer_duplicates", {"N": "0"})["N"]) for r in rows) == duplicates


# --- replays -------------------------------------------------------------------------------------


@pytest.mark.integration
def test_after_a_correct_replay_of_the_poison_events_verify_passes(
    demo_stack, clients, tmp_path, capsys, sink_mode
):
    manifest = tmp_path / "manifest.json"
    assert (
        run_load(demo_stack, manifest, "--count", "60", "--keys", "3", "--poison-fraction", "0.1")
        == 0
    )
    sent = json.loads(manifest.read_text())["events"]
    poison = [e for e in sent if e["poison"]]
    last_n = {e["key"]: e["n"] for e in sent}
    assert poison and any(e["n"] < last_n[e["key"]] for e in poison)  # re-driven behind last_n
    processor = demo_processor(demo_stack, clients, mode=sink_mode)
    drain(demo_stack, clients, processor)
    assert run_verify(demo_stack, manifest) == verify.ExitCode.OK
    assert f"{len(poison)} parked, 0 lost" in capsys.readouterr().out

    messages = receive_all(clients, demo_stack)
    assert replay_to(processor, messages) == []
    delete(clients, demo_stack, messages[1:])  # the first stays: a replay killed before delete
    clients.sqs.change_message_visibility(
        QueueUrl=demo_stack["poison_queue_url"],
        ReceiptHandle=messages[0]["ReceiptHandle"],
        VisibilityTimeout=0,
    )
    kept = poison_messages(clients, demo_stack)

    code = run_verify(demo_stack, manifest)

    out = capsys.readouterr().out
    assert code == verify.ExitCode.OK, out
    assert f"0 parked, 0 lost, 0 duplicated, 0 out of order; {len(poison)} applied by replay" in out
    assert "applied by a replay, still on the poison queue" in out
    # Replayed once more (the kept message, and a copy of another): nothing changes.
    before = clients.dynamodb.scan(TableName=demo_stack["sink_table_name"])["Items"]
    again = receive_all(clients, demo_stack) + [messages[-1]]
    assert len(kept) == 1 and replay_to(processor, again) == []
    after = clients.dynamodb.scan(TableName=demo_stack["sink_table_name"])["Items"]
    assert sorted(map(str, after)) == sorted(map(str, before))
    assert run_verify(demo_stack, manifest) == verify.ExitCode.OK


@pytest.mark.integration
def test_a_second_replay_of_one_event_is_rejected_by_the_sink_rows_condition(demo_stack, clients):
    applier = SinkApplier(demo_stack["sink_table_name"], boto3_client=clients.dynamodb)
    key = "k-x-0001"
    for n in (1, 3):  # n=2 was parked
        body = {"key": key, "n": n, "payload": f"p{n}"}
        items = applier(record_of(kinesis_record(key, n, body)))
        clients.dynamodb.transact_write_items(TransactItems=items)
    replayed = record_of(kinesis_record(key, 2, {"key": key, "n": 2, "payload": "p2"}))
    replayed.replay = True
    items = applier(replayed)  # both replays read the row before either commits

    clients.dynamodb.transact_write_items(TransactItems=items)
    with pytest.raises(ClientError) as second:
        clients.dynamodb.transact_write_items(TransactItems=items)

    assert second.value.response["Error"]["Code"] == "TransactionCanceledException"
    row = clients.dynamodb.get_item(TableName=demo_stack["sink_table_name"], Key=pk(key))["Item"]
    assert (row["count"]["N"], row["last_n"]["N"], row["replayed_n"]["NS"]) == ("2", "3", ["2"])
    assert applier(replayed) is None  # read after the commit: already replayed, nothing to do


def record_of(raw: dict):
    from processor.records import parse_record

    (record,) = parse_record(raw)
    return record


def pk(key: str) -> dict:
    return {"pk": {"S": key}}


@pytest.mark.integration
def test_a_copy_of_an_applied_event_under_a_new_sequence_number_is_counted_not_applied(
    demo_stack, clients
):
    from processor import OrderedProcessor
    from processor.checkpoint import DynamoDBCheckpointStore
    from processor.poison import MemoryPoisonSink
    from processor.testing import event

    log = RecordingLog()
    applier = SinkApplier(demo_stack["sink_table_name"], boto3_client=clients.dynamodb, log=log)
    checkpoints = DynamoDBCheckpointStore(
        demo_stack["checkpoint_table_name"], boto3_client=clients.dynamodb
    )
    processor = OrderedProcessor(applier, checkpoints=checkpoints, poison=MemoryPoisonSink())
    key = "k-x-0001"
    bodies = [{"key": key, "n": n, "payload": f"p{n}"} for n in (1, 2, 2, 3)]  # 2 sent twice

    response = processor.process(
        event(*[kinesis_record(key, i + 1, b) for i, b in enumerate(bodies)])
    )

    assert response["batchItemFailures"] == []
    row = clients.dynamodb.get_item(TableName=demo_stack["sink_table_name"], Key=pk(key))["Item"]
    assert (row["count"]["N"], row["last_n"]["N"], row["producer_duplicates"]["N"]) == (
        "3",
        "3",
        "1",
    )
    [(message, extra)] = log.warnings
    assert message == "producer duplicate skipped"
    assert (extra["n"], extra["last_n"], extra["sequence_number"]) == (2, 2, "3")


# --- two runs against one stack ----------------------------------------------------------------


@pytest.mark.integration
def test_two_load_runs_against_one_stack_verify_apart(
    demo_stack, clients, tmp_path, capsys, sink_mode
):
    processor = demo_processor(demo_stack, clients, mode=sink_mode)
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    args = ("--count", "40", "--keys", "4", "--poison-fraction", "0.1")

    assert run_load(demo_stack, first, *args) == 0
    drain(demo_stack, clients, processor)
    assert run_load(demo_stack, second, *args) == 0  # same seed: same payloads, same n's
    drain(demo_stack, clients, processor)

    runs = [json.loads(path.read_text())["runId"] for path in (first, second)]
    assert runs[0] != runs[1]
    capsys.readouterr()
    for path in (first, second):
        assert run_verify(demo_stack, path) == verify.ExitCode.OK, capsys.readouterr().out
    assert "verified 40 events over 4 keys" in capsys.readouterr().out
