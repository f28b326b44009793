"""The DynamoDB checkpoint store, the SQS poison sink and the demo handler, against a real
endpoint over HTTP (moto's server, or AWS_ENDPOINT_URL)."""

from __future__ import annotations

import base64
import json

import pytest

from processor import OrderedProcessor
from processor.checkpoint import (
    CheckpointKey,
    CheckpointUpdate,
    DynamoDBCheckpointStore,
    encode_position,
)
from processor.exceptions import (
    CheckpointStoreUnavailable,
    EffectRejectedError,
    PoisonSinkUnavailable,
    StaleCheckpointError,
)
from processor.poison import MemoryPoisonSink, SqsPoisonSink
from processor.testing import KINESIS_ARN, event, kinesis_record, lambda_context

pytestmark = pytest.mark.integration

KEY = CheckpointKey(KINESIS_ARN, "shardId-000000000000", "a")


@pytest.fixture
def dynamodb(aws_session):
    return aws_session.client("dynamodb")


@pytest.fixture
def store(dynamodb, new_table, unique_name) -> DynamoDBCheckpointStore:
    return DynamoDBCheckpointStore(new_table(f"ckpt-{unique_name}"), boto3_client=dynamodb)


@pytest.fixture
def sink_table(new_table, unique_name) -> str:
    return new_table(f"sink-{unique_name}")


@pytest.fixture
def queue_url(aws_session, unique_name) -> str:
    return aws_session.client("sqs").create_queue(QueueName=f"poison-{unique_name}")["QueueUrl"]


def receive_all(aws_session, queue_url: str) -> list[dict]:
    sqs = aws_session.client("sqs")
    messages = sqs.receive_message(
        QueueUrl=queue_url,
        MaxNumberOfMessages=10,
        MessageAttributeNames=["All"],
        WaitTimeSeconds=1,
    ).get("Messages", [])
    return messages


def test_checkpoint_moves_forward(store):
    store.save([CheckpointUpdate(KEY, (10, 0))])
    store.save([CheckpointUpdate(KEY, (11, 2))])
    assert store.load([KEY])[KEY].position == (11, 2)


def test_stale_invocation_cannot_move_a_checkpoint_back(store):
    store.save([CheckpointUpdate(KEY, (200, 0))])

    store.save([CheckpointUpdate(KEY, (100, 0))])  # a stale invocation, behind

    assert store.load([KEY])[KEY].position == (200, 0)
    assert store.stats.stale_writes == 1


def test_positions_compare_as_integers_in_the_table(store):
    # 56-digit Kinesis sequence numbers, beyond a DynamoDB number's 38 digits.
    low = 49590338271490256608559692538361571095921575989136588898
    store.save([CheckpointUpdate(KEY, (low + 1, 0))])
    store.save([CheckpointUpdate(KEY, (low, 5))])
    assert store.load([KEY])[KEY].position == (low + 1, 0)
    assert encode_position((9, 0)) < encode_position((10, 0))


def test_failed_attempts_and_ttl_are_stored(store, dynamodb):
    store.save(
        [
            CheckpointUpdate(
                KEY,
                None,
                failing_position=(7, 0),
                attempts=2,
                first_failure_at="2026-01-01T00:00:00.000Z",
            )
        ]
    )

    state = store.load([KEY])[KEY]
    item = dynamodb.get_item(TableName=store.table_name, Key={"pk": {"S": store.item_key(KEY)}})[
        "Item"
    ]

    assert (state.failing_position, state.attempts) == ((7, 0), 2)
    assert state.attempts_at((7, 0)) == 2 and state.attempts_at((8, 0)) == 0
    assert int(item["expires_at"]["N"]) > 0


def test_load_reads_more_keys_than_one_batch_get_allows(store):
    keys = [CheckpointKey(KINESIS_ARN, "s", f"k{i}") for i in range(250)]
    store.save([CheckpointUpdate(key, (i + 1, 0)) for i, key in enumerate(keys)])

    states = store.load(keys)

    assert len(states) == 250
    assert states[keys[249]].position == (250, 0)


def test_redelivery_applies_nothing_twice(store):
    applied = []
    processor = OrderedProcessor(
        lambda r: applied.append(r.sequence_number), checkpoints=store, poison=MemoryPoisonSink()
    )
    batch = event(*[kinesis_record(f"k{i % 3}", i + 1, b"{}") for i in range(9)])

    processor.process(batch, lambda_context())
    processor.process(batch, lambda_context())  # redelivered, as after a timeout

    assert applied == [str(i + 1) for i in range(9)]
    assert store.stats.writes == 3  # one per key, first time only (nothing new the second)


def _put_effect(table: str, key: str, value: str) -> dict:
    return {
        "Put": {
            "TableName": table,
            "Item": {"pk": {"S": key}, "v": {"S": value}},
            "ConditionExpression": "attribute_not_exists(pk)",
        }
    }


def test_transactional_effect_and_checkpoint_commit_together(store, dynamodb, sink_table):
    store.commit_with_effects(CheckpointUpdate(KEY, (5, 0)), [_put_effect(sink_table, "x", "1")])

    assert store.load([KEY])[KEY].position == (5, 0)
    assert dynamodb.get_item(TableName=sink_table, Key={"pk": {"S": "x"}})["Item"]["v"] == {
        "S": "1"
    }


def test_rejected_effect_leaves_the_checkpoint_where_it_was(store, dynamodb, sink_table):
    store.commit_with_effects(CheckpointUpdate(KEY, (5, 0)), [_put_effect(sink_table, "x", "1")])

    with pytest.raises(EffectRejectedError):
        store.commit_with_effects(
            CheckpointUpdate(KEY, (6, 0)), [_put_effect(sink_table, "x", "2")]
        )

    assert store.load([KEY])[KEY].position == (5, 0)
    item = dynamodb.get_item(TableName=sink_table, Key={"pk": {"S": "x"}})["Item"]
    assert item["v"] == {"S": "1"}


def test_effect_is_not_committed_again_behind_its_checkpoint(store, dynamodb, sink_table):
    store.commit_with_effects(CheckpointUpdate(KEY, (5, 0)), [])
    effect = {"Put": {"TableName": sink_table, "Item": {"pk": {"S": "y"}}}}

    with pytest.raises(StaleCheckpointError):
        store.commit_with_effects(CheckpointUpdate(KEY, (5, 0)), [effect])

    assert "Item" not in dynamodb.get_item(TableName=sink_table, Key={"pk": {"S": "y"}})


def test_unreachable_store_raises_so_the_esm_retries():
    import boto3

    from streamline.emulator import free_port

    client = boto3.client(
        "dynamodb", endpoint_url=f"http://127.0.0.1:{free_port()}", config=_no_retries()
    )
    processor = OrderedProcessor(
        lambda r: None,
        checkpoints=DynamoDBCheckpointStore("t", boto3_client=client),
        poison=MemoryPoisonSink(),
    )
    with pytest.raises(CheckpointStoreUnavailable):
        processor.process(event(kinesis_record("a", 1, b"{}")))


def test_applied_checkpoints_are_flushed_before_an_unreachable_sink_is_reraised(store):
    import boto3

    from streamline.emulator import free_port

    sqs = boto3.client("sqs", endpoint_url=f"http://127.0.0.1:{free_port()}", config=_no_retries())
    sink = SqsPoisonSink("http://127.0.0.1:1/000000000000/nowhere", boto3_client=sqs)
    processor = OrderedProcessor(_fail_on_b, checkpoints=store, poison=sink, max_attempts=1)

    with pytest.raises(PoisonSinkUnavailable):
        processor.process(event(kinesis_record("a", 1, b"{}"), kinesis_record("b", 2, b"{}")))

    key_a = CheckpointKey(KINESIS_ARN, "shardId-000000000000", "a")
    assert store.load([key_a])[key_a].position == (1, 0)


def _fail_on_b(record):
    if record.partition_key == "b":
        raise ValueError("b is poison")


def _no_retries():
    from botocore.config import Config

    return Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=1)


def test_parked_record_arrives_on_the_queue_with_its_payload(aws_session, queue_url):
    processor = OrderedProcessor(
        _fail_on_b, checkpoints=_memory(), poison=SqsPoisonSink(queue_url), max_attempts=1
    )
    processor.process(event(kinesis_record("b", 77, b'{"n": 1}')))

    (message,) = receive_all(aws_session, queue_url)
    body = json.loads(message["Body"])
    assert base64.b64decode(body["data"]) == b'{"n": 1}'
    assert (body["partitionKey"], body["sequenceNumber"], body["version"]) == ("b", "77", "1")
    attributes = {k: v["StringValue"] for k, v in message["MessageAttributes"].items()}
    assert attributes == {
        "source": "kinesis",
        "shardId": "shardId-000000000000",
        "errorType": "ValueError",
    }


def test_oversized_parked_record_arrives_with_its_coordinates(aws_session, queue_url):
    processor = OrderedProcessor(
        _fail_on_b, checkpoints=_memory(), poison=SqsPoisonSink(queue_url), max_attempts=1
    )
    processor.process(event(kinesis_record("b", 78, b"z" * 300_000)))

    (message,) = receive_all(aws_session, queue_url)
    body = json.loads(message["Body"])
    assert body["truncated"] is True and "data" not in body
    assert body["sequenceNumber"] == "78"


def _memory():
    from processor.checkpoint import MemoryCheckpointStore

    return MemoryCheckpointStore()


def test_demo_handler_applies_each_event_once_in_order_and_parks_poison(
    aws_session, monkeypatch, store, sink_table, queue_url, dynamodb
):
    from processor import handler as demo

    monkeypatch.setenv("CHECKPOINT_TABLE", store.table_name)
    monkeypatch.setenv("SINK_TABLE", sink_table)
    monkeypatch.setenv("POISON_QUEUE_URL", queue_url)
    monkeypatch.setenv("MAX_ATTEMPTS", "2")
    demo.build_processor.cache_clear()
    events = [{"key": "k1", "n": n, "payload": f"p{n}"} for n in (1, 2, 3)]
    events.insert(1, {"key": "k1", "n": 99, "payload": "bad", "poison": True})
    batch = event(*[kinesis_record("k1", i + 1, e) for i, e in enumerate(events)])

    responses = [demo.handler(batch, lambda_context()) for _ in range(3)]

    assert responses[0] == {"batchItemFailures": [{"itemIdentifier": "2"}]}
    assert responses[1:] == [{"batchItemFailures": []}] * 2
    item = dynamodb.get_item(TableName=sink_table, Key={"pk": {"S": "k1"}})["Item"]
    expected = ""
    for n in (1, 2, 3):
        expected = demo.chain(expected, f"p{n}")
    assert (item["last_n"]["N"], item["count"]["N"], item["h"]["S"]) == ("3", "3", expected)
    (parked,) = receive_all(aws_session, queue_url)
    assert json.loads(base64.b64decode(json.loads(parked["Body"])["data"]))["n"] == 99
    demo.build_processor.cache_clear()


# --- keyed state ----------------------------------------------------------------------------


def _total(record, state):
    return {"total": (state or {}).get("total", 0) + int(record.sequence_number)}


def test_keyed_state_commits_state_and_checkpoint_in_one_request_per_key(store):
    processor = OrderedProcessor(
        _total, checkpoints=store, poison=MemoryPoisonSink(), keyed_state=True, max_concurrency=4
    )
    records = [kinesis_record(key, seq, {}) for seq, key in enumerate("abcabcabc", start=1)]

    processor.process(event(*records))

    assert store.stats.writes == 3
    assert store.state_of(KINESIS_ARN, "a") == {"total": 1 + 4 + 7}
    assert store.state_of(KINESIS_ARN, "c") == {"total": 3 + 6 + 9}
    assert store.load([KEY])[KEY].position == (7, 0)
    assert store.state_of(KINESIS_ARN, "nobody") is None


def test_a_state_write_behind_another_commit_is_a_conflict(store):
    from processor.checkpoint import StateKey, StateWrite
    from processor.exceptions import StateConflictError

    state_key = StateKey(KINESIS_ARN, "a")
    store.commit_state(CheckpointUpdate(KEY, (1, 0)), StateWrite(state_key, '{"n":1}', 0))

    with pytest.raises(StateConflictError):
        store.commit_state(CheckpointUpdate(KEY, (2, 0)), StateWrite(state_key, '{"n":2}', 0))

    assert store.state_of(KINESIS_ARN, "a") == {"n": 1}
    assert store.load([KEY])[KEY].position == (1, 0)
    assert store.load_states([state_key])[state_key].version == 1


def test_a_stale_checkpoint_keeps_the_state_and_the_effects_out(store, dynamodb, sink_table):
    from processor.checkpoint import StateKey, StateWrite

    state_key = StateKey(KINESIS_ARN, "a")
    store.commit_state(CheckpointUpdate(KEY, (5, 0)), StateWrite(state_key, '{"n":1}', 0))
    effect = {"Put": {"TableName": sink_table, "Item": {"pk": {"S": "a"}}}}

    with pytest.raises(StaleCheckpointError):
        store.commit_state(
            CheckpointUpdate(KEY, (5, 0)), StateWrite(state_key, '{"n":2}', 1), [effect]
        )

    assert store.state_of(KINESIS_ARN, "a") == {"n": 1}
    assert "Item" not in dynamodb.get_item(TableName=sink_table, Key={"pk": {"S": "a"}})


def test_state_does_not_expire_with_the_checkpoints_unless_asked(store, dynamodb):
    from processor.checkpoint import StateKey, StateWrite

    state_key = StateKey(KINESIS_ARN, "a")
    store.commit_state(CheckpointUpdate(KEY, (1, 0)), StateWrite(state_key, "1", 0))
    item_key = {"pk": {"S": store.state_item_key(state_key)}}
    item = dynamodb.get_item(TableName=store.table_name, Key=item_key)["Item"]
    assert "expires_at" not in item

    store.state_ttl_s = 3600
    store.commit_state(CheckpointUpdate(KEY, (2, 0)), StateWrite(state_key, "2", 1))
    item = dynamodb.get_item(TableName=store.table_name, Key=item_key)["Item"]
    assert int(item["expires_at"]["N"]) > 0
