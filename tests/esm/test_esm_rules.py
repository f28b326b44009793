"""Lambda's stream rules as pure functions: no server, no clock."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from esm.onfailure import Condition, on_failure_record
from esm.rules import (
    MAX_PAYLOAD_BYTES,
    InvalidBatchResponse,
    bisect,
    count_expired,
    lane_of,
    parse_batch_item_failures,
    retries_exhausted,
    take_batch,
)
from esm.settings import MappingSettings, SettingsError, StartingPosition
from esm.sources import StreamRecord

BATCH = ["101", "205", "1003"]  # sequence numbers of varying length, in shard order

SUCCESS = [
    pytest.param(None, id="null-response"),
    pytest.param("", id="empty-string-response"),
    pytest.param([], id="empty-list-response"),
    pytest.param({}, id="empty-object-response"),
    pytest.param({"batchItemFailures": []}, id="empty-failures"),
    pytest.param({"batchItemFailures": None}, id="null-failures"),
]

CHECKPOINT = [
    pytest.param({"batchItemFailures": [{"itemIdentifier": "205"}]}, 1, id="one-failure"),
    pytest.param(
        {"batchItemFailures": [{"itemIdentifier": "1003"}, {"itemIdentifier": "205"}]},
        1,
        id="lowest-of-several",
    ),
    pytest.param(
        {"batchItemFailures": [{"itemIdentifier": "1003"}, {"itemIdentifier": "101"}]},
        0,
        id="lowest-compared-as-integer",
    ),
]

WHOLE_BATCH_FAILURE = [
    pytest.param({"batchItemFailures": [{"itemIdentifier": ""}]}, id="empty-identifier"),
    pytest.param({"batchItemFailures": [{"itemIdentifier": None}]}, id="null-identifier"),
    pytest.param({"batchItemFailures": [{"itemIdentifier": 205}]}, id="non-string-identifier"),
    pytest.param({"batchItemFailures": [{}]}, id="missing-identifier"),
    pytest.param({"batchItemFailures": [{"itemId": "205"}]}, id="misspelt-identifier-key"),
    pytest.param({"batchItemFailures": [{"itemIdentifier": "999"}]}, id="unknown-identifier"),
    pytest.param(
        {"batchItemFailures": [{"itemIdentifier": "205"}, {"itemIdentifier": "999"}]},
        id="one-unknown-among-valid",
    ),
    pytest.param({"batchItemFailures": ["205"]}, id="item-not-an-object"),
    pytest.param({"batchItemFailures": "205"}, id="failures-not-a-list"),
]


@pytest.mark.parametrize("response", SUCCESS)
def test_batch_item_failures_success_responses_settle_the_whole_batch(response):
    assert parse_batch_item_failures(response, BATCH) is None


@pytest.mark.parametrize(("response", "checkpoint"), CHECKPOINT)
def test_lowest_reported_sequence_number_is_the_checkpoint(response, checkpoint):
    assert parse_batch_item_failures(response, BATCH) == checkpoint


@pytest.mark.parametrize("response", WHOLE_BATCH_FAILURE)
def test_invalid_batch_item_failures_fail_the_whole_batch(response):
    with pytest.raises(InvalidBatchResponse):
        parse_batch_item_failures(response, BATCH)


def test_bisect_splits_at_the_middle_and_keeps_order():
    assert bisect([1, 2, 3, 4, 5, 6, 7, 8]) == ([1, 2, 3, 4], [5, 6, 7, 8])
    assert bisect([1, 2, 3]) == ([1, 2], [3])
    with pytest.raises(ValueError):
        bisect([1])


def test_expired_records_are_split_off_the_front():
    arrivals = [100.0, 130.0, 170.0, 200.0]
    assert count_expired(arrivals, now_s=200.0, maximum_record_age_s=60) == 2
    assert count_expired(arrivals, now_s=160.0, maximum_record_age_s=60) == 0
    assert count_expired(arrivals, now_s=1000.0, maximum_record_age_s=60) == 4


def test_record_age_minus_one_means_retention_and_nothing_expires_here():
    assert count_expired([0.0], now_s=10**9, maximum_record_age_s=-1) == 0


def test_maximum_retry_attempts_minus_one_retries_until_expiry():
    assert not retries_exhausted(10**6, -1)
    assert retries_exhausted(0, 0)
    assert not retries_exhausted(1, 2)
    assert retries_exhausted(2, 2)


def test_a_partition_key_always_maps_to_the_same_lane():
    lanes = {lane_of(f"key-{i}", 4) for i in range(200)}
    assert lanes == {0, 1, 2, 3}
    assert all(lane_of(f"key-{i}", 4) == lane_of(f"key-{i}", 4) for i in range(200))
    assert lane_of("anything", 1) == 0


def test_batch_stops_below_the_six_megabyte_payload_limit():
    one_mb = 1024 * 1024
    assert take_batch([one_mb] * 10, 100, MAX_PAYLOAD_BYTES) == 5
    assert take_batch([10] * 10, 4, MAX_PAYLOAD_BYTES) == 4
    # A single record larger than the limit still goes alone, never stalls the shard.
    assert take_batch([MAX_PAYLOAD_BYTES + 1, 10], 100, MAX_PAYLOAD_BYTES) == 1


def _records(arrivals):
    return [StreamRecord(str(100 + i), "k", a, "{}") for i, a in enumerate(arrivals)]


def test_kinesis_on_failure_record_has_millisecond_timestamps():
    record = on_failure_record(
        records=_records([1573691884.835, 1573691885.58]),
        shard_id="shardId-000000000001",
        stream_arn="arn:aws:kinesis:us-east-2:123456789012:stream/mystream",
        function_arn="arn:aws:lambda:us-east-2:123456789012:function:myfunction",
        condition=Condition.RETRY_ATTEMPTS_EXHAUSTED,
        request_id="c9b8fa9f-5a7f-xmpl-af9c-0c604cde93a5",
        invoke_count=1,
        function_error="Unhandled",
        now_s=1573691886.021,
    )
    # The example in the Lambda developer guide (kinesis-on-failure-destination.html).
    assert record == {
        "requestContext": {
            "requestId": "c9b8fa9f-5a7f-xmpl-af9c-0c604cde93a5",
            "functionArn": "arn:aws:lambda:us-east-2:123456789012:function:myfunction",
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": 1,
        },
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled",
        },
        "version": "1.0",
        "timestamp": "2019-11-14T00:38:06.021Z",
        "KinesisBatchInfo": {
            "shardId": "shardId-000000000001",
            "startSequenceNumber": "100",
            "endSequenceNumber": "101",
            "approximateArrivalOfFirstRecord": "2019-11-14T00:38:04.835Z",
            "approximateArrivalOfLastRecord": "2019-11-14T00:38:05.580Z",
            "batchSize": 2,
            "streamArn": "arn:aws:kinesis:us-east-2:123456789012:stream/mystream",
        },
        # The batch's event as a JSON string, which only S3 destinations keep.
        "payload": '{"Records":[{},{}]}',
    }
    assert json.loads(json.dumps(record)) == record


def test_dynamodb_on_failure_record_has_second_arrival_times():
    record = on_failure_record(
        records=_records([1573690399.0]),
        shard_id="shardId-00000001573689847184-864758bb",
        stream_arn="arn:aws:dynamodb:us-east-2:123456789012:table/t/stream/2019-11-14T00:04:06.388",
        function_arn="arn:aws:lambda:us-east-2:123456789012:function:myfunction",
        condition=Condition.RETRY_ATTEMPTS_EXHAUSTED,
        request_id="r",
        invoke_count=2,
        function_error=None,
        now_s=1573690429.717,
    )
    info = record["DDBStreamBatchInfo"]
    assert info["approximateArrivalOfFirstRecord"] == "2019-11-14T00:13:19Z"
    assert record["timestamp"] == "2019-11-14T00:13:49.717Z"
    assert record["responseContext"]["functionError"] is None
    assert "KinesisBatchInfo" not in record


def test_record_age_exceeded_has_no_response_context():
    record = on_failure_record(
        records=_records([1.0, 2.0]),
        shard_id="shardId-000000000000",
        stream_arn="arn:aws:kinesis:us-east-1:123456789012:stream/s",
        function_arn="arn:aws:lambda:us-east-1:123456789012:function:f",
        condition=Condition.RECORD_AGE_EXCEEDED,
        request_id="r",
        invoke_count=0,
        function_error=None,
        now_s=100.0,
    )
    assert record["requestContext"]["condition"] == "RecordAgeExceeded"
    assert "responseContext" not in record


def test_mapping_defaults_are_lambdas():
    settings = MappingSettings.from_api(
        {"EventSourceArn": "arn:aws:kinesis:us-east-1:123456789012:stream/s", "UUID": "u"}
    )
    assert settings == MappingSettings(
        event_source_arn="arn:aws:kinesis:us-east-1:123456789012:stream/s",
        batch_size=100,
        maximum_batching_window_s=0,
        starting_position=StartingPosition.TRIM_HORIZON,
        maximum_retry_attempts=-1,
        maximum_record_age_s=-1,
        bisect_batch_on_function_error=False,
        parallelization_factor=1,
        report_batch_item_failures=False,
        uuid="u",
    )


def test_at_timestamp_mapping_keeps_its_timestamp():
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    settings = MappingSettings.from_api(
        {
            "EventSourceArn": "arn:aws:kinesis:us-east-1:123456789012:stream/s",
            "StartingPosition": "AT_TIMESTAMP",
            "StartingPositionTimestamp": moment,
        }
    )
    assert settings.starting_position_timestamp == moment


@pytest.mark.parametrize(
    "settings",
    [
        pytest.param({"batch_size": 0}, id="batch-size-0"),
        pytest.param({"batch_size": 10001}, id="batch-size-10001"),
        pytest.param({"parallelization_factor": 11}, id="parallelization-11"),
        pytest.param({"maximum_record_age_s": 59}, id="record-age-59"),
        pytest.param({"maximum_retry_attempts": -2}, id="retries-minus-2"),
        pytest.param({"maximum_batching_window_s": 301}, id="window-301"),
        pytest.param({"starting_position": StartingPosition.AT_TIMESTAMP}, id="at-timestamp-no-ts"),
    ],
)
def test_settings_outside_lambdas_ranges_are_refused(settings):
    with pytest.raises(SettingsError):
        MappingSettings(event_source_arn="arn:aws:kinesis:us-east-1:1:stream/s", **settings)
