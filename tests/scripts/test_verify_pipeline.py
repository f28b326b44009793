"""The demo handler's promise per produced event, against the emulator: a producer's
duplicate is skipped, a replayed event is applied once."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from processor.handler import SinkAction, SinkApplier, SinkRow, sink_action
from processor.testing import kinesis_record

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


# --- against the emulator ------------------------------------------------------------------


class Clients:
    def __init__(self, aws_session):
        self.kinesis = aws_session.client("kinesis")
        self.dynamodb = aws_session.client("dynamodb")
        self.sqs = aws_session.client("sqs")


@pytest.fixture
def clients(aws_session) -> Clients:
    return Clients(aws_session)


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


class RecordingLog:
    def __init__(self):
        self.warnings: list[tuple[str, dict]] = []

    def warning(self, message: str, extra: dict | None = None) -> None:
        self.warnings.append((message, extra or {}))


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
