"""Tumbling windows: the pure rules, then the runner against a real endpoint.

https://docs.aws.amazon.com/lambda/latest/dg/services-kinesis-windows.html
https://docs.aws.amazon.com/lambda/latest/dg/services-ddb-windows.html
"""

from __future__ import annotations

import json
import threading
import time

import pytest
from conftest import mapping

from esm.cli import main
from esm.rules import InvalidBatchResponse
from esm.settings import MappingSettings, SettingsError, load_mappings
from esm.sources import event_payload
from esm.windows import (
    MAX_STATE_BYTES,
    LaneWindow,
    Window,
    count_in_window,
    iso8601,
    returned_state,
    state_too_large,
    window_of,
)

ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/s"

# --- the rules, no server ------------------------------------------------------------------


def test_windows_start_on_multiples_of_their_length_since_the_epoch():
    # AWS's example: a 120 s window from 07:04:00 to 07:06:00.
    arrival = 1607497475.0  # 2020-12-09T07:04:35Z
    window = window_of(arrival, 120)
    assert (iso8601(window.start_s), iso8601(window.end_s)) == (
        "2020-12-09T07:04:00Z",
        "2020-12-09T07:06:00Z",
    )


def test_a_window_holds_its_start_but_not_its_end():
    assert window_of(120.0, 60) == Window(120, 180)
    assert window_of(179.999, 60) == Window(120, 180)


def test_a_batch_stops_at_the_first_record_of_a_later_window():
    assert count_in_window([10.0, 10.5, 11.9, 12.0, 12.5], 2) == 3
    assert count_in_window([], 2) == 0


def test_state_over_one_megabyte_is_too_large():
    padding = MAX_STATE_BYTES - len('{"p":""}')
    assert not state_too_large({"p": "x" * padding})
    assert state_too_large({"p": "x" * (padding + 1)})


@pytest.mark.parametrize(
    "response",
    [
        pytest.param(None, id="null"),
        pytest.param({}, id="no-state"),
        pytest.param({"batchItemFailures": []}, id="failures-only"),
        pytest.param({"state": None}, id="null-state"),
        pytest.param({"state": [1]}, id="list-state"),
    ],
)
def test_a_response_without_a_state_object_fails_the_invocation(response):
    with pytest.raises(InvalidBatchResponse):
        returned_state(response)


def test_the_event_carries_the_window_fields_beside_the_records():
    window = LaneWindow(120, "shardId-000000000006", ARN, state={"1": 282})
    window.open_for(1607497475.0)

    event = json.loads(window.payload(event_payload([])))

    assert event == {
        "Records": [],
        "window": {"start": "2020-12-09T07:04:00Z", "end": "2020-12-09T07:06:00Z"},
        "state": {"1": 282},
        "shardId": "shardId-000000000006",
        "eventSourceARN": ARN,
        "isFinalInvokeForWindow": False,
        "isWindowTerminatedEarly": False,
    }


def test_an_early_end_keeps_the_window_with_a_fresh_state():
    window = LaneWindow(2, "s", ARN, state={"total": 1}, held=["1", "2"])
    window.open_for(10.0)

    assert window.finish(early=True) == ["1", "2"]
    assert (window.bounds, window.state, window.held) == (Window(10, 12), {}, [])
    window.state = {"total": 5}
    assert window.finish(early=False) == []
    assert (window.bounds, window.state) == (None, {})


@pytest.mark.parametrize("seconds", [-1, 901])
def test_tumbling_window_outside_0_to_900_is_refused(seconds):
    with pytest.raises(SettingsError, match="TumblingWindowInSeconds"):
        MappingSettings(event_source_arn=ARN, tumbling_window_s=seconds)


@pytest.mark.parametrize("value", ["0", "901", "1.5", "soon"])
def test_the_tumbling_window_flag_takes_1_to_900_seconds(value, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--stream-arn", ARN, "--handler", "a.b", "--tumbling-window", value])

    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--tumbling-window" in err[0]


# --- against the endpoint ------------------------------------------------------------------


def _at_window_start(window_s: int) -> None:
    """Wait for the next window to begin, so that records put now share a window."""
    time.sleep(window_s - time.time() % window_s + 0.05)


def _windowed(harness) -> list[dict]:
    return [
        {
            "data": entry["data"],
            "state": entry["state"],
            "final": entry["isFinalInvokeForWindow"],
            "early": entry["isWindowTerminatedEarly"],
        }
        for entry in harness.invocations()
    ]


@pytest.mark.integration
def test_state_passes_between_invocations_and_the_final_invoke_has_the_total(harness):
    stream_arn = harness.create_stream()
    function = harness.create_function("esm_handlers.sum_window")
    _at_window_start(1)
    harness.put([("k", "1"), ("k", "2"), ("k", "3")])

    harness.run(function, [mapping(stream_arn, batch_size=1, tumbling_window_s=1)])

    assert _windowed(harness) == [
        {"data": ["1"], "state": {}, "final": False, "early": False},
        {"data": ["2"], "state": {"total": 1}, "final": False, "early": False},
        {"data": ["3"], "state": {"total": 3}, "final": False, "early": False},
        {"data": [], "state": {"total": 6}, "final": True, "early": False},
    ]
    entries = harness.invocations()
    assert len({json.dumps(e["window"]) for e in entries}) == 1
    assert {e["shardId"] for e in entries} == {"shardId-000000000000"}
    assert {e["eventSourceARN"] for e in entries} == {stream_arn}


@pytest.mark.integration
def test_records_of_different_windows_are_aggregated_apart(harness):
    stream_arn = harness.create_stream()
    function = harness.create_function("esm_handlers.sum_window")
    _at_window_start(1)
    harness.put([("k", "1"), ("k", "2")])
    _at_window_start(1)
    harness.put([("k", "10")])

    harness.run(function, [mapping(stream_arn, tumbling_window_s=1)])

    entries = harness.invocations()
    finals = [e for e in entries if e["isFinalInvokeForWindow"]]
    assert [f["state"] for f in finals] == [{"total": 3}, {"total": 10}]
    assert finals[0]["window"]["end"] == finals[1]["window"]["start"]
    assert [e["state"] for e in entries if e["data"] == ["10"]] == [{}]


@pytest.mark.integration
def test_state_over_one_megabyte_ends_the_window_early(harness):
    stream_arn = harness.create_stream()
    function = harness.create_function("esm_handlers.sum_window")
    _at_window_start(1)
    harness.put([("k", "1"), ("k", "big"), ("k", "5")])

    harness.run(function, [mapping(stream_arn, batch_size=1, tumbling_window_s=1)])

    windowed = _windowed(harness)
    assert [(w["data"], w["final"], w["early"]) for w in windowed] == [
        (["1"], False, False),
        (["big"], False, False),
        ([], True, True),  # the oversized state, handed over for the last time
        (["5"], False, False),
        ([], True, False),
    ]
    assert windowed[2]["state"]["total"] == 1
    assert windowed[3]["state"] == {}  # the same window goes on with a fresh state
    assert windowed[4]["state"] == {"total": 5}
    assert len({json.dumps(e["window"]) for e in harness.invocations()}) == 1


@pytest.mark.integration
def test_a_failed_invocation_is_retried_with_the_same_state(harness):
    stream_arn = harness.create_stream()
    function = harness.create_function("esm_handlers.sum_window")
    _at_window_start(1)
    harness.put([("k", "1"), ("k", "flaky"), ("k", "2")])

    summary = harness.run(function, [mapping(stream_arn, batch_size=1, tumbling_window_s=1)])

    assert [(w["data"], w["state"], w["final"]) for w in _windowed(harness)] == [
        (["1"], {}, False),
        (["flaky"], {"total": 1}, False),  # raises
        (["flaky"], {"total": 1}, False),
        (["2"], {"total": 1}, False),
        ([], {"total": 3}, True),
    ]
    assert summary.shards[0]["functionErrors"] == 1


@pytest.mark.integration
def test_the_checkpoint_waits_for_the_final_invocation(harness):
    stream_arn = harness.create_stream()
    function = harness.create_function("esm_handlers.sum_window")
    windowed = mapping(stream_arn, tumbling_window_s=2)
    _at_window_start(2)
    harness.put([("k", "1"), ("k", "2")])
    runner = harness.runner(function, [windowed])
    thread = threading.Thread(target=runner.run)
    thread.start()
    deadline = time.monotonic() + 5
    while not harness.invocations() and time.monotonic() < deadline:
        time.sleep(0.02)

    runner.stop()  # before the window ends
    thread.join(10)
    harness.run(function, [windowed])

    # Nothing was checkpointed before the final invocation: the window is delivered again.
    assert [(w["data"], w["state"], w["final"]) for w in _windowed(harness)] == [
        (["1", "2"], {}, False),
        (["1", "2"], {}, False),
        ([], {"total": 3}, True),
    ]


@pytest.mark.integration
def test_dynamodb_stream_records_are_windowed_too(harness, table):
    name, stream_arn = table
    dynamodb = harness.client("dynamodb")
    function = harness.create_function("esm_handlers.sum_window")
    _at_window_start(1)
    for i, n in enumerate([4, 5]):
        dynamodb.put_item(TableName=name, Item={"pk": {"S": f"item-{i}"}, "n": {"N": str(n)}})

    harness.run(function, [mapping(stream_arn, tumbling_window_s=1)])

    finals = [e for e in harness.invocations() if e["isFinalInvokeForWindow"]]
    assert [f["state"] for f in finals] == [{"total": 9}]
    assert finals[0]["eventSourceARN"] == stream_arn


@pytest.mark.integration
def test_tumbling_window_is_read_from_the_mapping_at_the_endpoint(harness):
    stream_arn = harness.create_stream()
    function = harness.create_function("esm_handlers.sum_window")
    harness.create_mapping(
        function, stream_arn, StartingPosition="TRIM_HORIZON", TumblingWindowInSeconds=30
    )

    [loaded] = load_mappings(harness.client("lambda"), function)

    assert loaded.tumbling_window_s == 30
