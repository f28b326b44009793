"""Conformance: FilterCriteria in the runner — filtered before batching, never delivered,
and the checkpoint moves past them.

https://docs.aws.amazon.com/lambda/latest/dg/invocation-eventfiltering.html
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
import time

import pytest
from conftest import CODE_DIR, FAST_FLAGS, REPO_ROOT, mapping

from esm.cli import main
from esm.settings import load_mappings

BUY = {"Filters": [{"Pattern": json.dumps({"data": {"type": ["buy"]}})}]}


def _orders(count: int) -> list[tuple[str, str]]:
    """One key; even records are buys, the rest sells or plain (non-JSON) text."""
    items = []
    for i in range(count):
        if i % 2 == 0:
            items.append(("k", json.dumps({"type": "buy", "n": i})))
        elif i % 4 == 1:
            items.append(("k", json.dumps({"type": "sell", "n": i})))
        else:
            items.append(("k", f"plain text {i}"))
    return items


def _buys(items: list[tuple[str, str]]) -> list[str]:
    return [data for _, data in items if '"buy"' in data]


def _checkpoint(harness, function, settings) -> str:
    state = harness.state_dir / f"{function.name}-{settings.state_key}.json"
    (shard,) = json.loads(state.read_text())["shards"].values()
    return shard["sequenceNumber"]


def test_batches_fill_to_batch_size_with_matching_records_only(harness):
    # Given 40 records of which 20 match, read in batches of 5
    arn = harness.create_stream()
    items = _orders(40)
    harness.put(items)
    function = harness.create_function("esm_handlers.record")

    # When the runner runs the mapping with a filter on data.type
    summary = harness.run(function, [mapping(arn, batch_size=5, filter_criteria=BUY)])

    # Then only the buys are delivered, in order, in full batches of 5
    assert harness.delivered() == _buys(items)
    assert [len(i["data"]) for i in harness.invocations()] == [5, 5, 5, 5]
    assert summary.records == 20 and summary.filtered == 20


def test_the_checkpoint_moves_past_filtered_records(harness):
    # Given records that all fail the filter after one that matches
    arn = harness.create_stream()
    put = harness.put([("k", json.dumps({"type": "buy"}))] + [("k", "noise")] * 7)
    function = harness.create_function("esm_handlers.record")
    settings = mapping(arn, batch_size=10, filter_criteria=BUY)

    summary = harness.run(function, [settings])

    # Then the checkpoint is the last record read, though only the first was delivered
    assert len(harness.delivered()) == 1 and summary.filtered == 7
    assert _checkpoint(harness, function, settings) == put[-1]["SequenceNumber"]
    # and a second run finds nothing to deliver
    harness.run(function, [settings])
    assert len(harness.invocations()) == 1


def test_filtered_records_are_never_redelivered_after_a_failure_and_a_restart(harness):
    # Given a matching record that fails until the handler is fixed, among filtered ones
    arn = harness.create_stream()
    items = [
        ("k", json.dumps({"type": "buy", "n": 0})),
        ("k", "plain"),
        ("k", json.dumps({"type": "sell"})),
        ("k", json.dumps({"type": "buy", "n": "bad"})),
        ("k", json.dumps({"type": "sell"})),
        ("k", json.dumps({"type": "buy", "n": 5})),
    ]
    put = harness.put(items)
    function = harness.create_function("esm_handlers.fail_on_bad")
    settings = mapping(arn, batch_size=2, filter_criteria=BUY)

    # When the runner retries the failing batch a few times and is stopped
    runner = harness.runner(function, [settings])
    thread = threading.Thread(target=runner.run)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while len(harness.invocations()) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        runner.stop()
        thread.join(30)
    # (the first batch, buy 0 + the bad buy, failed every time: the checkpoint is before it)
    assert all(i["data"] == [items[0][1], items[3][1]] for i in harness.invocations())
    first_count = len(harness.invocations())

    # and started again with a handler that succeeds
    fixed = dataclasses.replace(function, handler="esm_handlers.record")
    harness.run(fixed, [settings])

    # Then the failed batch comes again, and no filtered record was ever delivered
    again = [i["data"] for i in harness.invocations()[first_count:]]
    assert again == [[items[0][1], items[3][1]], [items[5][1]]]
    assert not {d for d in harness.delivered()} & {d for _, d in items if "buy" not in d}
    assert _checkpoint(harness, fixed, settings) == put[-1]["SequenceNumber"]


def test_filter_criteria_are_read_from_the_mapping_at_the_endpoint(harness):
    # Given a mapping created with FilterCriteria at the endpoint
    arn = harness.create_stream()
    items = _orders(12)
    harness.put(items)
    function = harness.create_function("esm_handlers.record")
    harness.create_mapping(
        function, arn, StartingPosition="TRIM_HORIZON", BatchSize=10, FilterCriteria=BUY
    )

    # When the runner loads it from ListEventSourceMappings
    (settings,) = load_mappings(harness.client("lambda"), function)
    assert settings.filter_criteria == BUY
    summary = harness.run(function, [settings])

    # Then only matching records were delivered
    assert harness.delivered() == _buys(items)
    assert summary.filtered == 6


def test_dynamodb_filter_from_the_flag_on_event_name_and_new_image(harness, table):
    # Given inserts, an update and a delete on a table's stream
    name, stream_arn = table
    dynamodb = harness.client("dynamodb")
    for i, status in enumerate(["open", "closed", "open", "open"]):
        dynamodb.put_item(TableName=name, Item={"pk": {"S": f"p{i}"}, "status": {"S": status}})
    dynamodb.put_item(TableName=name, Item={"pk": {"S": "p0"}, "status": {"S": "open"}})
    dynamodb.delete_item(TableName=name, Key={"pk": {"S": "p2"}})
    pattern = {"eventName": ["INSERT"], "dynamodb": {"NewImage": {"status": {"S": ["open"]}}}}
    criteria = {"Filters": [{"Pattern": json.dumps(pattern)}]}

    # When `python -m esm run` gets it as --filter-criteria
    result = subprocess.run(
        [
            sys.executable, "-m", "esm", "run",
            "--stream-arn", stream_arn,
            "--handler", "esm_handlers.record",
            "--env", f"ESM_TEST_LOG={harness.log_path}",
            "--code-dir", str(CODE_DIR),
            "--state-dir", str(harness.state_dir),
            "--filter-criteria", json.dumps(criteria),
            "--until-idle", "0.5",
            *FAST_FLAGS,
        ],
        cwd=REPO_ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr

    # Then only the inserts of open items came (not the closed one, the update or the delete)
    delivered = [json.loads(d) for d in harness.delivered()]
    assert [d["pk"]["S"] for d in delivered] == ["p0", "p2", "p3"]
    assert "(3 filtered out)" in result.stderr


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param("{not json", "not JSON", id="not-json"),
        pytest.param('{"Filters": [{"Pattern": "[1]"}]}', "object", id="pattern-not-object"),
        pytest.param('{"Filters": [{"Pattern": "{\\"a\\": 1}"}]}', "list", id="rule-not-list"),
        pytest.param(
            json.dumps({"Filters": [{"Pattern": '{"a": [1]}'}] * 6}), "at most 5", id="six"
        ),
    ],
)
def test_a_malformed_filter_flag_is_one_line_and_exit_2(value, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--stream-arn", "arn:aws:kinesis:us-east-1:1:stream/s", "--handler", "m.f",
              "--filter-criteria", value])  # fmt: skip

    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--filter-criteria" in err[0] and message in err[0]
