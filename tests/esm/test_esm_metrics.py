"""Conformance: MetricsConfig EventCount — Lambda's event source mapping metrics for streams,
counted as AWS defines them and sent to CloudWatch (AWS/Lambda, EventSourceMappingUUID, Count).

https://docs.aws.amazon.com/lambda/latest/dg/monitoring-metrics-types.html#event-source-mapping-metrics
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError
from conftest import CODE_DIR, FAST, FAST_FLAGS, REPO_ROOT, mapping

from esm.delivery import BatchDelivery
from esm.invoker import ErrorKind, FunctionError, Invocation
from esm.metrics import EventCountPublisher, metric_data, metrics_uuid
from esm.settings import FunctionSettings, MappingSettings, SettingsError, load_mappings
from esm.sources import StreamRecord
from esm.stats import EventCounts, ShardStats
from processor.aws import Backoff, parse_arn

STREAM_ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/orders"
FUNCTION = FunctionSettings(
    name="f", arn="arn:aws:lambda:us-east-1:123456789012:function:f", handler="m.f"
)
KEEP = {"Filters": [{"Pattern": json.dumps({"data": {"keep": [True]}})}]}
METRICS = (
    "PolledEventCount",
    "FilteredOutEventCount",
    "InvokedEventCount",
    "FailedInvokeEventCount",
    "DroppedEventCount",
    "OnFailureDestinationDeliveredEventCount",
)


# --- counting, without a server ----------------------------------------------------------


def _records(count: int) -> list[StreamRecord]:
    return [StreamRecord(str(n), "k", 0.0, "{}") for n in range(1, count + 1)]


def _error() -> FunctionError:
    return FunctionError(ErrorKind.UNHANDLED, "ValueError", "bad")


class _Destination:
    """An on-failure destination that refuses the first ``failures`` records it is sent."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.sent: list[dict] = []

    def send(self, record: dict) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("destination down")
        self.sent.append(record)


def _settle(responses: list[Invocation], settings: MappingSettings, destination=None, count=3):
    """Deliver ``count`` records to a function answering ``responses`` in turn."""
    stats = ShardStats("orders", "shardId-000000000000")
    answers = iter(responses)
    delivery = BatchDelivery(
        mapping=settings,
        function=FUNCTION,
        shard_id=stats.shard_id,
        invoke=lambda payload: next(answers),
        destination=destination,
        stats=stats,
        retry_backoff=Backoff(base_s=0, cap_s=0, jitter=False),
        stop=threading.Event(),
    )
    assert delivery.settle(_records(count), lambda records: None)
    return stats.event_counts()


def test_a_retried_batch_counts_as_invoked_again_each_time():
    # "InvokedEventCount may count multiple times for the same polled event due to retries"
    counts = _settle(
        [Invocation("1", error=_error()), Invocation("2", error=_error()), Invocation("3")],
        mapping(STREAM_ARN),
    )

    assert counts.InvokedEventCount == 9 and counts.FailedInvokeEventCount == 6


def test_a_partial_failure_counts_every_record_of_that_invocation_as_failed():
    # "FailedInvokeEventCount includes any event with a non-empty BatchItemFailures"
    partial = Invocation("1", response={"batchItemFailures": [{"itemIdentifier": "2"}]})
    counts = _settle(
        [partial, Invocation("2")], mapping(STREAM_ARN, report_batch_item_failures=True)
    )

    # 3 records invoked and failed, then the 2 from the reported one retried and succeeded
    assert counts.InvokedEventCount == 5 and counts.FailedInvokeEventCount == 3


def test_an_invalid_response_fails_every_record_of_the_invocation():
    invalid = Invocation("1", response={"batchItemFailures": [{"itemIdentifier": ""}]})
    counts = _settle(
        [invalid, Invocation("2")], mapping(STREAM_ARN, report_batch_item_failures=True)
    )

    assert counts.InvokedEventCount == 6 and counts.FailedInvokeEventCount == 3


def test_records_given_up_without_a_destination_are_dropped():
    counts = _settle(
        [Invocation("1", error=_error())], mapping(STREAM_ARN, maximum_retry_attempts=0)
    )

    assert counts.DroppedEventCount == 3 and counts.OnFailureDestinationDeliveredEventCount == 0


def test_records_the_destination_took_are_delivered_not_dropped_and_counted_once():
    # Given a destination that fails twice before it takes the batch (the runner retries it)
    destination = _Destination(failures=2)
    counts = _settle(
        [Invocation("1", error=_error())],
        mapping(STREAM_ARN, maximum_retry_attempts=0, on_failure_destination_arn="arn:q"),
        destination,
    )

    assert len(destination.sent) == 1
    assert counts.OnFailureDestinationDeliveredEventCount == 3 and counts.DroppedEventCount == 0


def test_a_mappings_counts_are_the_sum_over_its_shards():
    shards = [ShardStats("orders", "shardId-000000000000"), ShardStats("orders", "shardId-1")]
    shards[0].polled(4)
    shards[0].filtered(1)
    shards[1].polled(2)
    shards[1].invoked(failed=True, records=2)
    shards[1].invocation_failed(2)

    total = EventCounts.total(shards)

    assert total == EventCounts(
        PolledEventCount=6, FilteredOutEventCount=1, InvokedEventCount=2, FailedInvokeEventCount=2
    )


def test_the_counts_show_in_the_progress_line_and_the_summary():
    stats = ShardStats("orders", "shardId-000000000000")
    stats.polled(5)
    stats.filtered(2)

    assert "events 5 polled, 2 filtered out, 0 invoked" in stats.progress_line(0.0)
    assert stats.summary()["eventCounts"]["PolledEventCount"] == 5


# --- settings ----------------------------------------------------------------------------


def test_metrics_config_is_read_from_a_listing_item():
    item = {"EventSourceArn": STREAM_ARN, "MetricsConfig": {"Metrics": ["EventCount"]}}

    assert MappingSettings.from_api(item).event_count_metrics
    assert not MappingSettings.from_api({"EventSourceArn": STREAM_ARN}).event_count_metrics


def test_an_unknown_metric_group_is_refused():
    with pytest.raises(SettingsError, match="MetricsConfig"):
        mapping(STREAM_ARN, metrics=("Everything",))


# --- the CloudWatch datums, without a server ---------------------------------------------


def test_datums_have_lambdas_namespace_dimension_and_unit():
    settings = mapping(STREAM_ARN, filter_criteria=KEEP, on_failure_destination_arn="arn:q")
    now = datetime.now(UTC)

    data = metric_data("uuid-1", EventCounts(PolledEventCount=7), settings, now)

    assert [d["MetricName"] for d in data] == list(METRICS)
    assert all(
        d["Dimensions"] == [{"Name": "EventSourceMappingUUID", "Value": "uuid-1"}]
        and d["Unit"] == "Count"
        and d["Timestamp"] == now
        for d in data
    )
    assert data[0]["Value"] == 7.0 and data[1]["Value"] == 0.0


def test_filtered_out_and_on_failure_counts_are_sent_only_for_mappings_that_have_them():
    data = metric_data("u", EventCounts(), mapping(STREAM_ARN), datetime.now(UTC))

    names = {d["MetricName"] for d in data}
    assert names == set(METRICS) - {
        "FilteredOutEventCount",
        "OnFailureDestinationDeliveredEventCount",
    }


def test_a_mapping_given_by_flags_has_a_stable_stand_in_uuid():
    settings = mapping(STREAM_ARN)

    assert metrics_uuid(settings, FUNCTION.arn) == metrics_uuid(settings, FUNCTION.arn)
    assert uuid.UUID(metrics_uuid(settings, FUNCTION.arn))
    assert metrics_uuid(dataclasses.replace(settings, uuid="u-1"), FUNCTION.arn) == "u-1"


class _CloudWatch:
    """A CloudWatch client that refuses the first ``failures`` PutMetricData calls."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.calls: list[dict] = []

    def put_metric_data(self, **request) -> None:
        if self.failures:
            self.failures -= 1
            raise ClientError({"Error": {"Code": "InternalFailure"}}, "PutMetricData")
        self.calls.append(request)


def test_each_call_sends_what_was_added_since_the_last_one_cloudwatch_took():
    client = _CloudWatch(failures=1)
    publisher = EventCountPublisher({"u": mapping(STREAM_ARN)}, interval_s=60, client=client)

    assert not publisher.publish({"u": EventCounts(PolledEventCount=3)})  # refused
    assert publisher.publish({"u": EventCounts(PolledEventCount=5)})
    assert publisher.publish({"u": EventCounts(PolledEventCount=6)})

    polled = [
        d["Value"]
        for call in client.calls
        for d in call["MetricData"]
        if d["MetricName"] == "PolledEventCount"
    ]
    assert polled == [5.0, 1.0]
    assert all(c["Namespace"] == "AWS/Lambda" for c in client.calls)


# --- the runner against the endpoint -----------------------------------------------------


def _statistics(harness, mapping_uuid: str) -> dict[str, float]:
    """The Sum of each metric of the mapping in CloudWatch at the endpoint."""
    cloudwatch = harness.client("cloudwatch")
    now = datetime.now(UTC)
    sums = {}
    for name in METRICS:
        points = cloudwatch.get_metric_statistics(
            Namespace="AWS/Lambda",
            MetricName=name,
            Dimensions=[{"Name": "EventSourceMappingUUID", "Value": mapping_uuid}],
            StartTime=now - timedelta(minutes=10),
            EndTime=now + timedelta(minutes=10),
            Period=3600,
            Statistics=["Sum"],
            Unit="Count",
        )["Datapoints"]
        if points:
            sums[name] = sum(p["Sum"] for p in points)
    return sums


def _orders() -> list[tuple[str, str]]:
    """Six records of one key: two filtered out, and a bad one in the second batch of two."""
    return [
        ("k", json.dumps({"keep": True, "v": "ok1"})),
        ("k", json.dumps({"keep": False})),
        ("k", json.dumps({"keep": True, "v": "ok2"})),
        ("k", json.dumps({"keep": True, "v": "bad"})),
        ("k", json.dumps({"keep": False})),
        ("k", json.dumps({"keep": True, "v": "ok3"})),
    ]


def test_runner_counts_each_metric_exactly_and_sends_them_to_cloudwatch(harness):
    # Given a mapping with MetricsConfig EventCount at the endpoint: a filter that drops 2 of
    # 6 records, batches of 2, one retry, and an on-failure queue
    arn = harness.create_stream()
    harness.put(_orders())
    queue_url, queue_arn = harness.create_queue()
    function = harness.create_function("esm_handlers.fail_on_bad")
    mapping_uuid = harness.create_mapping(
        function,
        arn,
        StartingPosition="TRIM_HORIZON",
        BatchSize=2,
        MaximumRetryAttempts=1,
        FilterCriteria=KEEP,
        DestinationConfig={"OnFailure": {"Destination": queue_arn}},
        MetricsConfig={"Metrics": ["EventCount"]},
    )
    (settings,) = load_mappings(harness.client("lambda"), function)
    assert settings.event_count_metrics  # moto returns MetricsConfig in its listing

    # When the runner runs it, publishing every 0.05 s and at stop
    tuning = dataclasses.replace(FAST, metrics_interval_s=0.05)
    summary = harness.run(function, [settings], tuning=tuning)

    # Then [ok1, ok2] succeeded; [bad, ok3] failed, was retried once, failed again and went
    # to the on-failure queue
    kept = [d for _, d in _orders() if '"keep": true' in d]
    assert [i["data"] for i in harness.invocations()] == [kept[:2], kept[2:], kept[2:]]
    assert len(harness.messages(queue_url)) == 1
    expected = {
        "PolledEventCount": 6,
        "FilteredOutEventCount": 2,
        "InvokedEventCount": 6,  # 2 + 2 + 2 (the retry counts again)
        "FailedInvokeEventCount": 4,  # the failing batch, twice
        "DroppedEventCount": 0,
        "OnFailureDestinationDeliveredEventCount": 2,
    }
    assert summary.event_counts.as_dict() == expected
    # and CloudWatch at the endpoint holds the same sums under the mapping's UUID
    assert _statistics(harness, mapping_uuid) == expected
    listed = harness.client("cloudwatch").list_metrics(
        Namespace="AWS/Lambda",
        Dimensions=[{"Name": "EventSourceMappingUUID", "Value": mapping_uuid}],
    )["Metrics"]
    assert {m["MetricName"] for m in listed} == set(METRICS)


def test_a_failing_put_metric_data_never_stops_processing(harness, caplog):
    # Given a CloudWatch that refuses every PutMetricData
    arn = harness.create_stream()
    harness.put([("k", f"ok{i}") for i in range(20)])
    function = harness.create_function("esm_handlers.record")
    settings = mapping(arn, batch_size=5, metrics=("EventCount",))
    client = _CloudWatch(failures=10**6)
    tuning = dataclasses.replace(FAST, metrics_interval_s=0.01)

    # When the runner runs with it
    with caplog.at_level(logging.WARNING, logger="esm"):
        summary = harness.run(function, [settings], tuning=tuning, cloudwatch=client)

    # Then every record was delivered, and the failures were warnings
    assert len(harness.delivered()) == 20
    assert summary.event_counts.InvokedEventCount == 20
    # (one per interval, and one at stop)
    assert sum("PutMetricData failed" in r.getMessage() for r in caplog.records) >= 2


def test_the_metrics_flag_sends_counts_of_a_mapping_given_by_flags(harness):
    # Given a stream whose second record always fails, and no on-failure destination
    arn = harness.create_stream()
    harness.put([("k", "ok"), ("k", "bad"), ("k", "ok")])

    # When `python -m esm run` runs it from flags with --metrics EventCount
    result = subprocess.run(
        [
            sys.executable, "-m", "esm", "run",
            "--stream-arn", arn, "--handler", "esm_handlers.fail_on_bad",
            "--env", f"ESM_TEST_LOG={harness.log_path}", "--code-dir", str(CODE_DIR),
            "--state-dir", str(harness.state_dir), "--batch-size", "1",
            "--maximum-retry-attempts", "0", "--metrics", "EventCount",
            "--until-idle", "0.3", *FAST_FLAGS,
        ],
        cwd=REPO_ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=60,
    )  # fmt: skip

    # Then the bad record was dropped (the summary says so), and CloudWatch has the counts
    # under the mapping's stand-in UUID
    assert result.returncode == 0, result.stderr
    assert "events 3 polled, 0 filtered out, 3 invoked, 1 failed invoke, 1 dropped" in (
        result.stderr
    )
    function_arn = f"arn:aws:lambda:{parse_arn(arn).region}:000000000000:function:esm-local"
    assert _statistics(harness, metrics_uuid(mapping(arn), function_arn)) == {
        "PolledEventCount": 3,
        "InvokedEventCount": 3,
        "FailedInvokeEventCount": 1,
        "DroppedEventCount": 1,
    }
