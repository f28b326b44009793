"""Payloads are contracts: `model=` / `schema=` validate a record's payload before the user's
code runs; a record that breaks the contract, or whose code raises ContractViolation, is
parked at once (no retry can help) and its key goes on."""

from __future__ import annotations

import base64
import json

import pytest
from aws_lambda_powertools import Logger
from pydantic import BaseModel, ConfigDict, Field

from processor import ContractViolation, InvalidPayloadError, OrderedProcessor
from processor.checkpoint import MemoryCheckpointStore
from processor.contracts import REPLAY_MARKER, DemoEvent
from processor.handler import DemoEventModel, demo_event
from processor.poison import MemoryPoisonSink
from processor.records import parse_event
from processor.testing import dynamodb_record, event, kinesis_record


class Order(BaseModel):
    model_config = ConfigDict(strict=True)

    order_id: str
    quantity: int = Field(ge=1)
    note: str = ""


ORDER_SCHEMA = {
    "title": "order",
    "type": "object",
    "properties": {
        "order_id": {"type": "string"},
        "quantity": {"type": "integer", "minimum": 1},
        "note": {"type": "string", "default": ""},
    },
    "required": ["order_id", "quantity"],
}

GOOD = {"order_id": "o-1", "quantity": 2}
WRONG_TYPE = {"order_id": "o-1", "quantity": "2"}


class Recorder:
    """The user's apply: notes every record it sees and the model it got."""

    def __init__(self, fail_first: int = 0, raise_on: set[int] | None = None):
        self.seen: list[tuple[str, int]] = []
        self.models: list = []
        self.fail_first = fail_first
        self.raise_on = raise_on or set()

    def __call__(self, record):
        self.seen.append((record.partition_key, int(record.sequence_number)))
        self.models.append(record.model)
        if self.fail_first:
            self.fail_first -= 1
            raise RuntimeError("the database is down")
        if int(record.sequence_number) in self.raise_on:
            raise ContractViolation(f"order in record {record.sequence_number} is cancelled")


def processor_for(apply, **options) -> tuple[OrderedProcessor, MemoryPoisonSink]:
    sink = MemoryPoisonSink()
    options.setdefault("max_attempts", 3)
    processor = OrderedProcessor(apply, checkpoints=MemoryCheckpointStore(), poison=sink, **options)
    return processor, sink


def parked(sink: MemoryPoisonSink) -> list[dict]:
    return [json.loads(message) for message in sink.messages]


@pytest.mark.parametrize("max_concurrency", [1, 4])
@pytest.mark.parametrize(
    "contract", [{"model": Order}, {"schema": ORDER_SCHEMA}], ids=["model", "schema"]
)
def test_a_payload_that_breaks_the_contract_is_parked_at_once_and_its_key_goes_on(
    contract, max_concurrency
):
    apply = Recorder()
    processor, sink = processor_for(apply, max_concurrency=max_concurrency, **contract)

    response = processor.process(
        event(
            kinesis_record("a", 1, GOOD),
            kinesis_record("a", 2, WRONG_TYPE),
            kinesis_record("a", 3, GOOD),
            kinesis_record("b", 4, {"order_id": "o-2"}),
        )
    )

    assert response == {"batchItemFailures": []}  # no retry: nothing to wait for
    assert apply.seen == [("a", 1), ("a", 3)]  # the user's code never saw a broken payload
    messages = parked(sink)
    assert [(m["partitionKey"], m["sequenceNumber"]) for m in messages] == [("a", "2"), ("b", "4")]
    assert {m["error"]["type"] for m in messages} == {"InvalidPayloadError"}
    assert {m["attempts"] for m in messages} == {1}
    assert json.loads(base64.b64decode(messages[0]["data"])) == WRONG_TYPE


def test_the_poison_message_names_every_broken_field_with_its_input_shortened():
    processor, sink = processor_for(Recorder(), model=Order)
    payload = {"quantity": 0, "note": "x" * 500}

    processor.process(event(kinesis_record("a", 1, payload)))

    (message,) = parked(sink)
    assert set(message) >= {"error", "attempts", "data", "firstFailureAt", "parkedAt"}
    lines = message["error"]["message"].splitlines()
    assert lines[0] == "payload breaks its contract (model Order): 2 fields"
    assert lines[1] == "order_id: Field required"  # a missing field: no input to show
    assert lines[2] == "quantity: Input should be greater than or equal to 1 (given 0)"
    assert len(lines) == 3
    assert "Traceback" in message["error"]["traceback"]


def test_a_long_offending_input_is_shortened():
    processor, sink = processor_for(Recorder(), model=Order)

    processor.process(event(kinesis_record("a", 1, {"order_id": ["y" * 500], "quantity": 1})))

    (message,) = parked(sink)
    entry = message["error"]["message"].splitlines()[1]
    assert entry.startswith("order_id: Input should be a valid string (given ['yyy")
    assert entry.endswith("…)")
    assert len(entry) < 150


def test_the_schema_reports_its_first_broken_field():
    processor, sink = processor_for(Recorder(), schema=ORDER_SCHEMA)

    processor.process(event(kinesis_record("a", 1, WRONG_TYPE)))

    (message,) = parked(sink)
    assert message["error"]["message"] == (
        "payload breaks its contract (JSON schema 'order'): 1 field\n"
        "quantity: must be integer (given '2')"
    )


@pytest.mark.parametrize(
    "contract", [{"model": Order}, {"schema": ORDER_SCHEMA}], ids=["model", "schema"]
)
@pytest.mark.parametrize("data", [b"not json", b"\xff\xfe", b""], ids=["text", "not-utf8", "empty"])
def test_kinesis_data_that_is_not_json_breaks_the_contract(contract, data):
    apply = Recorder()
    processor, sink = processor_for(apply, **contract)

    processor.process(event(kinesis_record("a", 1, data)))

    (message,) = parked(sink)
    assert apply.seen == []
    assert message["error"]["type"] == "InvalidPayloadError"
    assert message["error"]["message"].splitlines()[1].startswith("(payload): ")


def test_the_function_gets_the_parsed_model_on_record_model():
    apply = Recorder()
    processor, _ = processor_for(apply, model=Order)

    processor.process(event(kinesis_record("a", 1, GOOD)))

    assert apply.models == [Order(order_id="o-1", quantity=2)]


@pytest.mark.parametrize("keyed_state", [False, True], ids=["apply", "fold"])
def test_the_parsed_model_is_released_when_the_function_returns(keyed_state):
    # Given a function that keeps the records it saw
    kept = []

    def apply(record, state=None):
        assert record.model == Order(order_id="o-1", quantity=2)  # there while it runs
        kept.append(record)
        return state

    processor, _ = processor_for(apply, model=Order, keyed_state=keyed_state)

    processor.process(event(kinesis_record("a", 1, GOOD), kinesis_record("a", 2, GOOD)))

    # Then the parsed payloads were not kept to the end of the batch
    assert len(kept) == 2
    assert [record.model for record in kept] == [None, None]


def test_with_a_schema_alone_record_model_is_the_validated_json_with_its_defaults():
    apply = Recorder()
    processor, _ = processor_for(apply, schema=ORDER_SCHEMA)

    processor.process(event(kinesis_record("a", 1, GOOD)))

    assert apply.models == [{"order_id": "o-1", "quantity": 2, "note": ""}]


def test_without_model_or_schema_record_model_is_none_and_nothing_is_checked():
    apply = Recorder()
    processor, sink = processor_for(apply)

    processor.process(event(kinesis_record("a", 1, b"not json")))

    assert processor.payload_check is None
    assert apply.models == [None]
    assert sink.messages == []


def test_record_model_is_none_on_a_parsed_record():
    (record,) = parse_event(event(kinesis_record("a", 1, GOOD)))
    assert record.model is None


def test_with_model_and_schema_both_are_checked_and_the_model_is_what_the_function_gets():
    apply = Recorder()
    processor, sink = processor_for(apply, model=Order, schema=ORDER_SCHEMA)

    processor.process(
        event(
            kinesis_record("a", 1, GOOD), kinesis_record("a", 2, {"order_id": "o", "quantity": 0})
        )
    )

    assert apply.models == [Order(order_id="o-1", quantity=2)]
    (message,) = parked(sink)
    assert message["error"]["message"].startswith(
        "payload breaks its contract (JSON schema 'order' and model Order): 1 field"
    )


# --- DynamoDB -------------------------------------------------------------------------------


def test_a_dynamodb_new_image_is_validated_as_plain_python_values():
    apply = Recorder()
    processor, sink = processor_for(apply, model=Order)
    keys = {"order_id": "o-1"}

    processor.process(
        event(
            dynamodb_record(keys, 1, event_name="INSERT", new_image={**keys, "quantity": 2}),
            dynamodb_record(keys, 2, new_image={**keys, "quantity": "2"}, old_image=keys),
            dynamodb_record(keys, 3, new_image={**keys, "quantity": 3}, old_image=keys),
        )
    )

    assert apply.models == [Order(order_id="o-1", quantity=2), Order(order_id="o-1", quantity=3)]
    (message,) = parked(sink)
    assert message["sequenceNumber"] == "2"
    assert message["dynamodb"]["NewImage"]["quantity"] == {"S": "2"}
    assert message["error"]["message"].splitlines()[1] == (
        "quantity: Input should be a valid integer (given '2')"
    )


def test_a_remove_is_not_validated_and_reaches_the_function_with_no_model():
    apply = Recorder()
    processor, sink = processor_for(apply, model=Order)
    keys = {"order_id": "o-1"}

    processor.process(event(dynamodb_record(keys, 1, event_name="REMOVE", old_image=keys)))

    assert apply.seen == [('{"order_id":"o-1"}', 1)]
    assert apply.models == [None]
    assert sink.messages == []


def test_an_insert_without_a_new_image_breaks_the_contract():
    processor, sink = processor_for(Recorder(), model=Order)

    processor.process(event(dynamodb_record({"order_id": "o-1"}, 1, event_name="INSERT")))

    (message,) = parked(sink)
    assert "INSERT carries no NewImage" in message["error"]["message"]


def test_a_schema_with_defaults_leaves_the_record_image_as_it_arrived():
    apply = Recorder()
    processor, _ = processor_for(apply, schema=ORDER_SCHEMA)
    image = {"order_id": "o-1", "quantity": 2}
    records = []

    def keep(record):
        apply(record)
        records.append(record)

    processor.apply = keep
    processor.process(event(dynamodb_record({"order_id": "o-1"}, 1, new_image=image)))

    assert apply.models == [{**image, "note": ""}]
    assert records[0].new_image == image


# --- the user's own ContractViolation -------------------------------------------------------


def test_a_contract_violation_raised_by_the_function_parks_at_once_without_using_up_retries():
    apply = Recorder(raise_on={2})
    processor, sink = processor_for(apply, max_attempts=5)

    response = processor.process(
        event(
            kinesis_record("a", 1, GOOD), kinesis_record("a", 2, GOOD), kinesis_record("a", 3, GOOD)
        )
    )

    assert response == {"batchItemFailures": []}
    assert apply.seen == [("a", 1), ("a", 2), ("a", 3)]
    (message,) = parked(sink)
    assert message["error"]["type"] == "ContractViolation"
    assert message["error"]["message"] == "order in record 2 is cancelled"
    assert message["attempts"] == 1


def test_attempts_count_the_transient_failures_before_the_contract_violation():
    apply = Recorder(fail_first=2, raise_on={1})
    processor, sink = processor_for(apply, max_attempts=5)

    for _ in range(3):  # two transient failures, retried by Lambda; then the violation
        processor.process(event(kinesis_record("a", 1, GOOD)))

    (message,) = parked(sink)
    assert message["error"]["type"] == "ContractViolation"
    assert message["attempts"] == 3


def test_a_subclass_of_contract_violation_names_itself_in_the_poison_message():
    class CancelledOrder(ContractViolation):
        pass

    def apply(record):
        raise CancelledOrder("cancelled")

    processor, sink = processor_for(apply)
    processor.process(event(kinesis_record("a", 1, GOOD)))

    (message,) = parked(sink)
    assert message["error"]["type"] == "CancelledOrder"
    assert message["attempts"] == 1


# --- keyed state, replay, logs, construction -------------------------------------------------


def test_a_fold_sees_only_valid_payloads_and_a_violation_parks_at_once():
    store = MemoryCheckpointStore()
    sink = MemoryPoisonSink()
    seen = []

    def fold(record, state):
        seen.append(record.model.quantity)
        return (state or 0) + record.model.quantity

    processor = OrderedProcessor(
        fold, checkpoints=store, poison=sink, keyed_state=True, model=Order, max_attempts=3
    )
    response = processor.process(
        event(
            kinesis_record("a", 1, {"order_id": "o", "quantity": 2}),
            kinesis_record("a", 2, WRONG_TYPE),
            kinesis_record("a", 3, {"order_id": "o", "quantity": 5}),
        )
    )

    assert response == {"batchItemFailures": []}
    assert seen == [2, 5]
    assert store.state_of(kinesis_record("a", 1, GOOD)["eventSourceARN"], "a") == 7
    (message,) = parked(sink)
    assert (message["sequenceNumber"], message["attempts"]) == ("2", 1)


def test_a_replayed_record_that_still_breaks_the_contract_is_reported_failed_not_parked_again():
    processor, sink = processor_for(Recorder(), model=Order)
    record = kinesis_record("a", 1, WRONG_TYPE)
    processor.process(event(record))
    assert len(sink.messages) == 1

    response = processor.process({"Records": [record], REPLAY_MARKER: True})

    assert response["batchItemFailures"] == [{"itemIdentifier": "1"}]
    assert response[REPLAY_MARKER]["failed"] == ["1"]
    assert len(sink.messages) == 1


def test_the_offending_input_is_never_logged_above_debug(capsys):
    marker = "SECRET-INPUT-51c2"
    processor, sink = processor_for(
        # A service of its own: Powertools binds a service's handler to the stdout of the
        # first test that logs with it.
        Recorder(),
        model=Order,
        logger=Logger(service="streamline-contracts-test", level="INFO"),
    )

    processor.process(event(kinesis_record("a", 1, {"order_id": 7, "quantity": marker})))

    logged = capsys.readouterr()
    lines = [json.loads(line) for line in logged.out.splitlines() if line.startswith("{")]
    (parked_line,) = [line for line in lines if line.get("outcome") == "parked"]
    assert parked_line["error_type"] == "InvalidPayloadError"
    assert "quantity: Input should be a valid integer" in parked_line["error"]
    assert marker not in logged.out + logged.err
    assert marker in sink.messages[0]  # the poison message keeps it


@pytest.mark.parametrize(
    "contract, error",
    [
        pytest.param({"schema": {"type": "no-such-type"}}, ValueError, id="bad-schema"),
        pytest.param({"model": object()}, Exception, id="not-a-model"),
    ],
)
def test_a_model_or_schema_that_cannot_validate_fails_at_construction(contract, error):
    with pytest.raises(error):
        processor_for(Recorder(), **contract)


def test_invalid_payload_error_is_a_contract_violation():
    assert issubclass(InvalidPayloadError, ContractViolation)


# --- the demo's event -----------------------------------------------------------------------


@pytest.mark.parametrize("poison", [False, True])
def test_the_demo_event_matches_its_model_on_both_sources(poison):
    demo = DemoEvent("k-0001", 7, "abc", poison)
    processor, sink = processor_for(lambda record: None, model=DemoEventModel)
    events = []

    def apply(record):
        events.append(demo_event(record))

    processor.apply = apply
    processor.process(event(kinesis_record("k-0001", 1, demo.data())))
    stream_record = dynamodb_record({"pk": "k-0001"}, 2, event_name="INSERT", new_image={})
    stream_record["dynamodb"]["NewImage"] = demo.item()
    processor.process(event(stream_record))

    assert sink.messages == []
    assert events == [demo, demo]


def test_a_demo_event_that_breaks_its_contract_is_parked_and_reads_back_as_such():
    demo = DemoEvent("k-0001", 7, "abc", breaks_contract=True)
    processor, sink = processor_for(lambda record: None, model=DemoEventModel)
    stream_record = dynamodb_record({"pk": "k-0001"}, 2, event_name="INSERT", new_image={})
    stream_record["dynamodb"]["NewImage"] = demo.item()

    processor.process(event(kinesis_record("k-0001", 1, demo.data()), stream_record))

    kinesis, dynamodb = parked(sink)
    assert kinesis["error"]["message"].splitlines()[1] == (
        "n: Input should be a valid integer (given '7')"
    )
    assert dynamodb["error"]["type"] == "InvalidPayloadError"
    body = json.loads(base64.b64decode(kinesis["data"]))
    assert DemoEvent.from_body(body) == demo
