"""`python -m esm event kinesis|dynamodb`: a sample event a handler can take as it is.

No server: the event is checked by parsing it the way the handler does
(`processor.records.parse_event`), and fed to `python -m esm invoke` through a pipe.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import CODE_DIR

from esm.cli import main
from processor.contracts import DemoEvent
from processor.records import Record, parse_event


def _event(capsys, *argv: str) -> dict:
    assert main(["event", *argv]) == 0
    return json.loads(capsys.readouterr().out)


def _records(event: dict) -> list[Record]:
    items = parse_event(event)
    assert all(isinstance(item, Record) for item in items), items
    return items


def test_kinesis_default_is_three_demo_events_over_two_keys(capsys):
    event = _event(capsys, "kinesis")

    records = _records(event)
    assert [DemoEvent.from_body(r.json()) for r in records] == [
        DemoEvent("k-0001", 1, records[0].json()["payload"]),
        DemoEvent("k-0002", 1, records[1].json()["payload"]),
        DemoEvent("k-0001", 2, records[2].json()["payload"]),
    ]
    assert [r.partition_key for r in records] == ["k-0001", "k-0002", "k-0001"]


def test_kinesis_records_look_like_lambdas(capsys):
    event = _event(capsys, "kinesis", "--records", "4")

    for raw in event["Records"]:
        sequence_number = raw["kinesis"]["sequenceNumber"]
        assert len(sequence_number) == 56 and sequence_number.isdigit()
        assert raw["eventID"] == f"shardId-000000000000:{sequence_number}"
        assert raw["eventSourceARN"].startswith("arn:aws:kinesis:us-east-1:123456789012:stream/")
        assert raw["awsRegion"] == "us-east-1"
        assert raw["eventName"] == "aws:kinesis:record"
        assert raw["invokeIdentityArn"].startswith("arn:aws:iam::123456789012:role/")
    arrivals = [raw["kinesis"]["approximateArrivalTimestamp"] for raw in event["Records"]]
    assert arrivals == sorted(arrivals) and all(round(a, 3) == a for a in arrivals)


@pytest.mark.parametrize("source", ["kinesis", "dynamodb"])
def test_positions_grow_along_the_one_shard_of_the_batch(source, capsys):
    records = _records(_event(capsys, source, "--records", "20", "--keys", "3"))

    positions = [r.position for r in records]
    assert positions == sorted(set(positions))
    assert len({r.shard_id for r in records}) == 1
    assert len({r.partition_key for r in records}) == 3


def test_n_counts_up_per_key(capsys):
    records = _records(_event(capsys, "kinesis", "--records", "7", "--keys", "3"))

    by_key: dict[str, list[int]] = {}
    for record in records:
        by_key.setdefault(record.partition_key, []).append(record.json()["n"])
    assert by_key == {"k-0001": [1, 2, 3], "k-0002": [1, 2], "k-0003": [1, 2]}


def test_kpl_aggregates_split_back_into_the_user_records_in_order(capsys):
    event = _event(
        capsys, "kinesis", "--records", "5", "--aggregate", "--aggregate-max-records", "2"
    )

    assert len(event["Records"]) == 3  # 2 + 2 + 1 user records
    records = _records(event)
    assert [(r.partition_key, r.json()["n"]) for r in records] == [
        ("k-0001", 1),
        ("k-0002", 1),
        ("k-0001", 2),
        ("k-0002", 2),
        ("k-0001", 3),
    ]
    assert [r.sub_sequence_number for r in records] == [0, 1, 0, 1, 0]
    assert [r.position for r in records] == sorted(r.position for r in records)


def test_poison_every_marks_every_nth_event(capsys):
    records = _records(_event(capsys, "kinesis", "--records", "6", "--poison-every", "3"))

    assert [r.json().get("poison", False) for r in records] == [
        False,
        False,
        True,
        False,
        False,
        True,
    ]


def test_dynamodb_mix_is_insert_then_modify_with_the_previous_image(capsys):
    records = _records(_event(capsys, "dynamodb", "--records", "3"))

    assert [r.event_name for r in records] == ["INSERT", "INSERT", "MODIFY"]
    first, _, third = records
    assert first.keys == {"pk": "k-0001"} and first.old_image is None
    assert first.new_image == {"pk": "k-0001", "n": 1, "payload": first.new_image["payload"]}
    assert third.old_image == first.new_image
    assert third.new_image["n"] == 2
    for raw in (r.raw for r in records):
        assert raw["dynamodb"]["StreamViewType"] == "NEW_AND_OLD_IMAGES"
        assert raw["eventSourceARN"].startswith("arn:aws:dynamodb:us-east-1:123456789012:table/")
        assert len(raw["eventID"]) == 32


@pytest.mark.parametrize(
    ("event_name", "images"),
    [
        pytest.param("INSERT", {"NewImage"}, id="insert"),
        pytest.param("MODIFY", {"NewImage", "OldImage"}, id="modify"),
        pytest.param("REMOVE", {"OldImage"}, id="remove"),
    ],
)
def test_dynamodb_images_are_those_of_the_event_name(event_name, images, capsys):
    event = _event(capsys, "dynamodb", "--event-name", event_name)

    for raw in event["Records"]:
        assert raw["eventName"] == event_name
        assert images == {"NewImage", "OldImage"} & set(raw["dynamodb"])
    assert all(r.event_name == event_name for r in _records(event))


def test_dynamodb_poison_is_a_boolean_attribute(capsys):
    records = _records(_event(capsys, "dynamodb", "--records", "2", "--poison-every", "2"))

    assert [r.new_image.get("poison", False) for r in records] == [False, True]
    assert records[1].raw["dynamodb"]["NewImage"]["poison"] == {"BOOL": True}


def test_data_is_every_records_payload(capsys):
    records = _records(_event(capsys, "kinesis", "--data", '{"price": 1.5}', "--records", "2"))

    assert [r.json() for r in records] == [{"price": 1.5}, {"price": 1.5}]


def test_data_file_gives_one_record_per_line(tmp_path, capsys):
    data = tmp_path / "payloads.jsonl"
    data.write_text('{"sku": "a", "qty": 1}\n\n{"sku": "b", "qty": 2.5}\n')

    records = _records(_event(capsys, "dynamodb", "--data-file", str(data)))

    assert [r.new_image for r in records] == [
        {"pk": "k-0001", "sku": "a", "qty": 1},
        {"pk": "k-0002", "sku": "b", "qty": 2.5},
    ]
    assert records[1].raw["dynamodb"]["NewImage"]["qty"] == {"N": "2.5"}


def test_event_source_arn_sets_the_stream_and_region(capsys):
    arn = "arn:aws:kinesis:eu-west-1:111122223333:stream/orders"

    event = _event(capsys, "kinesis", "--event-source-arn", arn)

    assert {(r["eventSourceARN"], r["awsRegion"]) for r in event["Records"]} == {(arn, "eu-west-1")}


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["kinesis", "--data", "{not json"], id="data-not-json"),
        pytest.param(["kinesis", "--data-file", "/no/such/file"], id="data-file-missing"),
        pytest.param(["dynamodb", "--data", "[1, 2]"], id="item-not-an-object"),
        pytest.param(["kinesis", "--data", "7", "--poison-every", "1"], id="poison-not-object"),
        pytest.param(["kinesis", "--records", "10001"], id="more-than-a-batch"),
        pytest.param(
            ["dynamodb", "--event-source-arn", "arn:aws:kinesis:us-east-1:1:stream/s"],
            id="arn-of-another-service",
        ),
    ],
)
def test_a_bad_request_is_one_line_and_exit_2(argv, capsys):
    assert main(["event", *argv]) == 2

    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("[esm] cannot build the event: "), err


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["kinesis", "--records", "0"], id="zero-records"),
        pytest.param(["kinesis", "--event-name", "INSERT"], id="event-name-on-kinesis"),
        pytest.param(["dynamodb", "--aggregate"], id="aggregate-on-dynamodb"),
        pytest.param(["sqs"], id="unknown-source"),
    ],
)
def test_a_flag_that_does_not_apply_is_refused(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["event", *argv])

    assert exit_.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_event_piped_into_invoke_reaches_the_handler(tmp_path):
    # Given every other record poisoned, when the event goes through a pipe into invoke,
    # then the handler sees the demo events and reports the first poisoned record.
    produce = subprocess.Popen(
        [sys.executable, "-m", "esm", "event", "kinesis", "--records", "4", "--aggregate"]
        + ["--aggregate-max-records", "1", "--poison-every", "2"],
        stdout=subprocess.PIPE,
    )
    consume = subprocess.run(
        [sys.executable, "-m", "esm", "invoke", "--handler", "esm_handlers.report_poison"]
        + ["--code-dir", str(CODE_DIR), "--event", "-", "--report-batch-item-failures"],
        stdin=produce.stdout,
        capture_output=True,
        text=True,
        timeout=60,
    )
    produce.stdout.close()
    assert produce.wait(timeout=10) == 0

    assert consume.returncode == 0, consume.stderr
    failures = json.loads(consume.stdout)["batchItemFailures"]
    second = "49590338271490256608559692540925702759324208523137515618"
    assert failures[-1] == {"itemIdentifier": second}
    assert f"batchItemFailures names {second} (the lowest of the 2 named)" in consume.stderr


@pytest.mark.parametrize("source", ["kinesis", "dynamodb"])
def test_model_generates_payloads_the_model_accepts(source, capsys):
    from processor.handler import DemoEventModel

    # Given the demo's model, When an event is generated from it
    event = _event(capsys, source, "--records", "4", "--model", "processor.handler:DemoEventModel")

    # Then every record's payload validates against the model
    records = _records(event)
    assert len(records) == 4
    for record in records:
        payload = record.json() if source == "kinesis" else record.new_image
        DemoEventModel.model_validate(payload)


def test_a_model_that_cannot_be_imported_is_one_line_and_exit_2(capsys):
    assert main(["event", "kinesis", "--model", "no_such_module:Thing"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no_such_module" in err[0]


def test_model_is_imported_from_the_code_dir_the_current_directory_by_default(
    tmp_path, monkeypatch, capsys
):
    # Given a model in the user's own package, outside the repository
    (tmp_path / "shop").mkdir()
    (tmp_path / "shop" / "__init__.py").write_text("")
    (tmp_path / "shop" / "events.py").write_text(
        "from pydantic import BaseModel\n\n\nclass Order(BaseModel):\n"
        "    order_id: str\n    amount_cents: int\n"
    )

    # When the event is generated from there, or from elsewhere with --code-dir
    monkeypatch.chdir(tmp_path)
    here = _event(capsys, "kinesis", "--records", "2", "--model", "shop.events:Order")
    for name in ("shop", "shop.events"):  # imported afresh below
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.chdir(tmp_path.parent)
    there = _event(
        capsys, "kinesis", "--records", "2", "--model", "shop.events:Order",
        "--code-dir", str(tmp_path),
    )  # fmt: skip

    # Then both carry payloads of the model, and the path is as it was
    for event in (here, there):
        assert [set(r.json()) for r in _records(event)] == [{"order_id", "amount_cents"}] * 2
    assert str(tmp_path) not in sys.path
