"""Conformance: the runner against a real endpoint, Kinesis source. One rule per test.

References (Lambda developer guide):
- with-kinesis.html, services-kinesis-batchfailurereporting.html,
  services-kinesis-errors.html, kinesis-on-failure-destination.html
"""

from __future__ import annotations

import base64
import dataclasses
import itertools
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime

from botocore.awsrequest import AWSResponse
from conftest import CODE_DIR, FAST, FAST_FLAGS, REPO_ROOT, mapping

from esm import StartingPosition
from esm.onfailure import iso_utc
from esm.rules import lane_of
from esm.settings import load_mappings
from processor.aws import parse_arn


def _run_cli(*args: str, timeout_s: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "esm", "run", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=dict(os.environ),
    )


def test_runs_the_functions_mappings_from_the_lambda_api(harness):
    # Given a function with a mapping created with its ARN, and another function's mapping
    arn = harness.create_stream()
    harness.put([(f"k{i % 3}", f"r{i}") for i in range(30)])
    function = harness.create_function("esm_handlers.record")
    harness.create_mapping(function, arn, StartingPosition="TRIM_HORIZON", BatchSize=7)
    other = harness.client("lambda").create_function(
        FunctionName=f"{harness.name}-other",
        Runtime="python3.12",
        Role=harness.role_arn,
        Handler="esm_handlers.fail_on_bad",
        Code={"ZipFile": b"PK\x05\x06" + b"\x00" * 18},
    )
    harness.client("lambda").create_event_source_mapping(
        FunctionName=other["FunctionArn"], EventSourceArn=arn, StartingPosition="TRIM_HORIZON"
    )
    assert [m.batch_size for m in load_mappings(harness.client("lambda"), function)] == [7]

    # When the CLI runs the function by name
    result = _run_cli(
        "--function-name",
        function.name,
        "--code-dir",
        str(CODE_DIR),
        "--until-idle",
        "0.5",
        "--state-dir",
        str(harness.state_dir),
        *FAST_FLAGS,
    )

    # Then every record went through the function's handler, in batches of the mapping's size
    assert result.returncode == 0, result.stderr
    assert harness.delivered() == [f"r{i}" for i in range(30)]
    assert [len(e["data"]) for e in harness.invocations()] == [7, 7, 7, 7, 2]
    assert "[esm] summary: 30 records over 1 shards" in result.stderr


def test_kinesis_event_has_lambdas_shape(harness):
    arn = harness.create_stream()
    before = time.time()
    results = harness.put([("user-1", "hello")])
    function = harness.create_function("esm_handlers.record")
    harness.run(function, [mapping(arn)])

    record = harness.invocations()[0]["first"]
    sequence_number = results[0]["SequenceNumber"]
    shard_id = results[0]["ShardId"]
    arrival = record["kinesis"].pop("approximateArrivalTimestamp")
    assert isinstance(arrival, float) and before - 5 < arrival < time.time() + 5
    assert round(arrival, 3) == arrival  # milliseconds, as Lambda sends them
    assert record == {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": "user-1",
            "sequenceNumber": sequence_number,
            "data": base64.b64encode(b"hello").decode(),
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": f"{shard_id}:{sequence_number}",
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": harness.role_arn,
        "awsRegion": parse_arn(arn).region,
        "eventSourceARN": arn,
    }


def test_handler_gets_the_functions_timeout_environment_and_context(harness):
    arn = harness.create_stream()
    harness.put([("k", "x")])
    function = harness.create_function(
        "esm_handlers.context_echo", timeout_s=7, environment={"GREETING": "hi"}
    )
    harness.run(function, [mapping(arn)])

    entry = harness.invocations()[0]
    assert entry["lambda_context"]["function_name"] == function.name
    assert entry["lambda_context"]["invoked_function_arn"] == function.arn
    assert entry["lambda_context"]["function_version"] == "$LATEST"
    assert entry["lambda_context"]["memory_limit_in_mb"] == 256
    assert entry["lambda_context"]["aws_request_id"] == entry["requestId"]
    assert entry["lambda_context"]["log_group_name"] == f"/aws/lambda/{function.name}"
    assert 5000 < entry["lambda_context"]["remaining_ms"] <= 7000
    assert entry["env"] == {
        "GREETING": "hi",
        "AWS_LAMBDA_FUNCTION_NAME": function.name,
        "_HANDLER": "esm_handlers.context_echo",
    }


def test_worker_stays_warm_between_invocations(harness):
    arn = harness.create_stream()
    harness.put([("k", f"r{i}") for i in range(10)])
    function = harness.create_function("esm_handlers.record")
    harness.run(function, [mapping(arn, batch_size=2)])

    invocations = harness.invocations()
    assert len(invocations) == 5
    assert len({e["pid"] for e in invocations}) == 1


def test_bisect_settles_first_half_before_second(harness):
    # Given a batch of 8 with one bad record (index 5), bisect on, no retries
    arn = harness.create_stream()
    harness.put([("k", "bad" if i == 5 else f"ok{i}") for i in range(8)])
    queue_url, queue_arn = harness.create_queue()
    function = harness.create_function("esm_handlers.fail_on_bad")

    harness.run(
        function,
        [
            mapping(
                arn,
                batch_size=10,
                bisect_batch_on_function_error=True,
                maximum_retry_attempts=0,
                on_failure_destination_arn=queue_arn,
            )
        ],
    )

    # Then the batch is halved until the bad record stands alone; first halves go first
    batches = [e["data"] for e in harness.invocations()]
    ok = [f"ok{i}" for i in range(8)]
    assert batches == [
        ok[:5] + ["bad"] + ok[6:],
        ok[0:4],
        ok[4:5] + ["bad"] + ok[6:8],
        ok[4:5] + ["bad"],
        ok[4:5],
        ["bad"],
        ok[6:8],
    ]
    # and only the bad record goes to the on-failure destination
    (failure,) = harness.messages(queue_url)
    assert failure["KinesisBatchInfo"]["batchSize"] == 1
    assert failure["responseContext"]["functionError"] == "Unhandled"
    assert failure["requestContext"]["approximateInvokeCount"] == 1


def test_bisect_halves_do_not_count_toward_retries(harness):
    arn = harness.create_stream()
    harness.put([("k", "bad" if i == 1 else f"ok{i}") for i in range(2)])
    queue_url, queue_arn = harness.create_queue()
    function = harness.create_function("esm_handlers.fail_on_bad")

    harness.run(
        function,
        [
            mapping(
                arn,
                bisect_batch_on_function_error=True,
                maximum_retry_attempts=2,
                on_failure_destination_arn=queue_arn,
            )
        ],
    )

    # [ok0, bad] fails and splits; [ok0] passes; [bad] is tried 1 + 2 retries.
    assert [e["data"] for e in harness.invocations()] == [
        ["ok0", "bad"],
        ["ok0"],
        ["bad"],
        ["bad"],
        ["bad"],
    ]
    (failure,) = harness.messages(queue_url)
    assert failure["requestContext"]["approximateInvokeCount"] == 3


def test_retry_exhaustion_sends_aws_on_failure_record_and_moves_on(harness):
    # Given a failing batch of 5 and a healthy one behind it
    arn = harness.create_stream()
    results = harness.put([("k", "bad" if i == 2 else f"ok{i}") for i in range(7)])
    queue_url, queue_arn = harness.create_queue()
    function = harness.create_function("esm_handlers.fail_on_bad")
    records = harness.client("kinesis").get_records(
        ShardIterator=harness.client("kinesis").get_shard_iterator(
            StreamName=harness.name,
            ShardId=results[0]["ShardId"],
            ShardIteratorType="TRIM_HORIZON",
        )["ShardIterator"]
    )["Records"]

    before = time.time()
    harness.run(
        function,
        [
            mapping(
                arn, batch_size=5, maximum_retry_attempts=2, on_failure_destination_arn=queue_arn
            )
        ],
    )

    # Then the batch was invoked 1 + 2 times, given up, and the shard moved on
    batches = [e["data"] for e in harness.invocations()]
    failing = ["ok0", "ok1", "bad", "ok3", "ok4"]
    assert batches == [failing, failing, failing, ["ok5", "ok6"]]
    (failure,) = harness.messages(queue_url)
    timestamp = failure.pop("timestamp")
    assert before - 1 <= _parse_iso(timestamp) <= time.time() + 1
    assert len(timestamp) == len("2019-11-14T00:38:06.021Z")
    assert failure == {
        "requestContext": {
            "requestId": harness.invocations()[2]["requestId"],
            "functionArn": function.arn,
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": 3,
        },
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled",
        },
        "version": "1.0",
        "KinesisBatchInfo": {
            "shardId": results[0]["ShardId"],
            "startSequenceNumber": results[0]["SequenceNumber"],
            "endSequenceNumber": results[4]["SequenceNumber"],
            "approximateArrivalOfFirstRecord": iso_utc(
                records[0]["ApproximateArrivalTimestamp"].timestamp()
            ),
            "approximateArrivalOfLastRecord": iso_utc(
                records[4]["ApproximateArrivalTimestamp"].timestamp()
            ),
            "batchSize": 5,
            "streamArn": arn,
        },
    }


def _parse_iso(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_partial_failure_retries_from_lowest_reported_record(harness):
    # Given a function reporting records 2 and 4 of 6 as failed, one retry allowed
    arn = harness.create_stream()
    results = harness.put([("k", "bad" if i in (2, 4) else f"ok{i}") for i in range(6)])
    harness.put([("k", "next")])
    queue_url, queue_arn = harness.create_queue()
    function = harness.create_function("esm_handlers.report_bad")

    harness.run(
        function,
        [
            mapping(
                arn,
                batch_size=6,
                report_batch_item_failures=True,
                maximum_retry_attempts=1,
                on_failure_destination_arn=queue_arn,
            )
        ],
    )

    # Then the retry starts at the lowest reported record, and the partial failure counted
    # as the one retry: the failing suffix goes to on-failure with functionError null
    batches = [e["data"] for e in harness.invocations()]
    assert batches == [
        ["ok0", "ok1", "bad", "ok3", "bad", "ok5"],
        ["bad", "ok3", "bad", "ok5"],
        ["next"],
    ]
    (failure,) = harness.messages(queue_url)
    assert failure["responseContext"]["functionError"] is None
    assert failure["requestContext"]["approximateInvokeCount"] == 2
    info = failure["KinesisBatchInfo"]
    assert info["startSequenceNumber"] == results[2]["SequenceNumber"]
    assert info["endSequenceNumber"] == results[5]["SequenceNumber"]
    assert info["batchSize"] == 4


def test_unknown_identifier_fails_the_whole_batch_with_null_function_error(harness):
    arn = harness.create_stream()
    harness.put([("k", "ok0"), ("k", "bad"), ("k", "ok2")])
    queue_url, queue_arn = harness.create_queue()
    function = harness.create_function("esm_handlers.unknown_identifier_on_bad")

    harness.run(
        function,
        [
            mapping(
                arn,
                report_batch_item_failures=True,
                bisect_batch_on_function_error=True,
                maximum_retry_attempts=0,
                on_failure_destination_arn=queue_arn,
            )
        ],
    )

    # The function returned, so no bisect: the whole batch fails and is given up whole
    assert [e["data"] for e in harness.invocations()] == [["ok0", "bad", "ok2"]]
    (failure,) = harness.messages(queue_url)
    assert failure["KinesisBatchInfo"]["batchSize"] == 3
    assert failure["responseContext"]["functionError"] is None


def test_timeout_is_a_function_error_and_replaces_the_worker(harness):
    arn = harness.create_stream()
    harness.put([("k", "ok0"), ("k", "slow"), ("k", "ok2")])
    queue_url, queue_arn = harness.create_queue()
    function = harness.create_function("esm_handlers.sleep_on_slow", timeout_s=1)

    started = time.monotonic()
    harness.run(
        function,
        [
            mapping(
                arn, batch_size=1, maximum_retry_attempts=0, on_failure_destination_arn=queue_arn
            )
        ],
    )

    assert time.monotonic() - started < 10
    invocations = harness.invocations()
    assert [e["data"] for e in invocations] == [["ok0"], ["slow"], ["ok2"]]
    assert invocations[0]["pid"] == invocations[1]["pid"] != invocations[2]["pid"]
    (failure,) = harness.messages(queue_url)
    assert failure["responseContext"]["functionError"] == "Unhandled"
    assert failure["KinesisBatchInfo"]["batchSize"] == 1


def test_crash_is_a_function_error_and_replaces_the_worker(harness):
    arn = harness.create_stream()
    harness.put([("k", "ok0"), ("k", "bad"), ("k", "ok2")])
    queue_url, queue_arn = harness.create_queue()
    function = harness.create_function("esm_handlers.crash_on_bad")

    summary = harness.run(
        function,
        [
            mapping(
                arn, batch_size=1, maximum_retry_attempts=1, on_failure_destination_arn=queue_arn
            )
        ],
    )

    invocations = harness.invocations()
    assert [e["data"] for e in invocations] == [["ok0"], ["bad"], ["bad"], ["ok2"]]
    assert len({e["pid"] for e in invocations}) == 3  # one warm, replaced after each crash
    (failure,) = harness.messages(queue_url)
    assert failure["responseContext"]["functionError"] == "Unhandled"
    assert failure["requestContext"]["approximateInvokeCount"] == 2
    assert summary.shards[0]["functionErrors"] == 2


def test_expired_records_are_split_off_with_record_age_exceeded(harness):
    # Given three records, then three more three seconds later, and a maximum age of 60 s;
    # the runner's clock is set so that only the first three are older than that (with a
    # margin of 1.5 s either side for the runner to get going)
    arn = harness.create_stream()
    harness.put([("k", f"old{i}") for i in range(3)])
    time.sleep(3)
    harness.put([("k", f"new{i}") for i in range(3)])
    newest_put = time.time()
    queue_url, queue_arn = harness.create_queue()
    function = harness.create_function("esm_handlers.record")
    offset_s = 58.5 - (time.time() - newest_put)

    harness.run(
        function,
        [mapping(arn, maximum_record_age_s=60, on_failure_destination_arn=queue_arn)],
        clock=lambda: time.time() + offset_s,
    )

    # Then the fresh records are still delivered, the expired ones go to on-failure
    assert harness.delivered() == ["new0", "new1", "new2"]
    (failure,) = harness.messages(queue_url)
    assert failure["requestContext"]["condition"] == "RecordAgeExceeded"
    assert "responseContext" not in failure
    assert failure["KinesisBatchInfo"]["batchSize"] == 3


def test_per_key_order_under_parallelization_factor_4(harness):
    # Given 12 keys x 25 records on one shard, and a handler that takes its time
    arn = harness.create_stream()
    items = [(f"key-{k}", f"key-{k}:{n}") for n in range(25) for k in range(12)]
    harness.put(items)
    function = harness.create_function(
        "esm_handlers.record", environment={"ESM_TEST_SLEEP": "0.02"}
    )

    harness.run(function, [mapping(arn, batch_size=10, parallelization_factor=4)])

    # Then every key's records arrived once each, in order, with batches running concurrently
    invocations = harness.invocations()
    seen: dict[str, list[int]] = {}
    for entry in invocations:
        for data in entry["data"]:
            key, n = data.split(":")
            seen.setdefault(key, []).append(int(n))
    assert seen == {f"key-{k}": list(range(25)) for k in range(12)}
    assert len({e["pid"] for e in invocations}) > 1
    # each batch holds the keys of one lane only
    assert all(len({lane_of(k, 4) for k in e["keys"]}) == 1 for e in invocations)


def test_latest_starts_at_the_tip_of_the_shard(harness):
    arn = harness.create_stream()
    harness.put([("k", "before")])
    function = harness.create_function("esm_handlers.record")
    runner = harness.runner(function, [mapping(arn, starting_position=StartingPosition.LATEST)])
    thread = threading.Thread(target=runner.run, kwargs={"until_idle_s": 0.5})
    thread.start()
    try:
        # Idle: the shard's LATEST iterator is taken and its first read came back empty.
        deadline = time.monotonic() + 10
        while not (runner.stats and runner.mapping_runners[0].idle):
            assert time.monotonic() < deadline, "the runner never started reading"
            time.sleep(0.02)
        harness.put([("k", "after")])
    finally:
        thread.join(30)
    assert harness.delivered() == ["after"]


def test_at_timestamp_starts_at_that_time(harness):
    arn = harness.create_stream()
    harness.put([("k", "before")])
    time.sleep(1.1)
    boundary = datetime.now(tz=UTC)
    time.sleep(0.1)
    harness.put([("k", "after")])
    function = harness.create_function("esm_handlers.record")

    harness.run(
        function,
        [
            mapping(
                arn,
                starting_position=StartingPosition.AT_TIMESTAMP,
                starting_position_timestamp=boundary,
            )
        ],
    )

    assert harness.delivered() == ["after"]


def test_batching_window_gathers_records_into_one_batch(harness):
    arn = harness.create_stream()
    function = harness.create_function("esm_handlers.record")
    runner = harness.runner(function, [mapping(arn, maximum_batching_window_s=1.5)])
    thread = threading.Thread(target=runner.run, kwargs={"until_idle_s": 0.3})
    harness.put([("k", "r0")])
    thread.start()
    try:
        for i in range(1, 4):
            time.sleep(0.2)
            harness.put([("k", f"r{i}")])
    finally:
        thread.join(30)
    assert [e["data"] for e in harness.invocations()] == [["r0", "r1", "r2", "r3"]]


def test_payload_limit_keeps_each_invocation_under_six_megabytes(harness):
    arn = harness.create_stream()
    one_mb = "x" * (1024 * 1024 - 100)
    for i in range(6):  # PutRecords takes 5 MB per call
        harness.put([(f"k{i}", f"{i}{one_mb}")])
    function = harness.create_function("esm_handlers.record")

    harness.run(function, [mapping(arn, batch_size=100)])

    # base64 makes each record ~1.33 MB in the event: four fit in 6 MB, not five
    sizes = [len(e["data"]) for e in harness.invocations()]
    assert sizes == [4, 2]
    assert [d[0] for d in harness.delivered()] == [str(i) for i in range(6)]


def test_throttled_reads_are_retried_with_backoff(harness):
    arn = harness.create_stream()
    harness.put([("k", f"r{i}") for i in range(5)])
    function = harness.create_function("esm_handlers.record")
    tuning = dataclasses.replace(FAST, throttle_backoff_s=0.05, max_throttle_backoff_s=1.0)
    runner = harness.runner(function, [mapping(arn)], tuning=tuning)
    kinesis = runner.mapping_runners[0].source.client
    throttled = []

    def throttle_three_reads(**kwargs):
        # What Kinesis answers when a shard's read limit is exceeded.
        if len(throttled) < 3:
            throttled.append(time.monotonic())
            return (
                AWSResponse("http://throttled", 400, {}, None),
                {
                    "Error": {
                        "Code": "ProvisionedThroughputExceededException",
                        "Message": "Rate exceeded for shard",
                    }
                },
            )
        return None

    kinesis.meta.events.register("before-call.kinesis.GetRecords", throttle_three_reads)
    summary = runner.run(until_idle_s=0.3)

    assert harness.delivered() == [f"r{i}" for i in range(5)]
    assert summary.shards[0]["throttles"] == 3
    gaps = [b - a for a, b in zip(throttled, throttled[1:], strict=False)]
    assert gaps[1] > gaps[0] * 1.5  # the wait doubles
    assert tuning.throttle_backoff_s <= gaps[0]


def test_runs_from_flags_without_a_mapping_or_function_at_the_endpoint(harness):
    arn = harness.create_stream()
    harness.put([("k", f"r{i}") for i in range(5)])

    result = _run_cli(
        "--stream-arn",
        arn,
        "--handler",
        "esm_handlers.record",
        "--env",
        f"ESM_TEST_LOG={harness.log_path}",
        "--batch-size",
        "2",
        "--code-dir",
        str(CODE_DIR),
        "--until-idle",
        "0.3",
        "--state-dir",
        str(harness.state_dir),
        *FAST_FLAGS,
    )

    assert result.returncode == 0, result.stderr
    assert [e["data"] for e in harness.invocations()] == [["r0", "r1"], ["r2", "r3"], ["r4"]]


def test_prints_per_shard_progress_while_running(harness):
    arn = harness.create_stream()
    harness.put([("k", f"r{i}") for i in range(20)])

    result = _run_cli(
        "--stream-arn",
        arn,
        "--handler",
        "esm_handlers.record",
        "--env",
        f"ESM_TEST_LOG={harness.log_path}",
        "--env",
        "ESM_TEST_SLEEP=0.1",
        "--batch-size",
        "2",
        "--code-dir",
        str(CODE_DIR),
        "--until-idle",
        "0.3",
        "--progress-interval",
        "0.25",
        "--state-dir",
        str(harness.state_dir),
        *FAST_FLAGS,
    )

    assert result.returncode == 0, result.stderr
    progress = [
        line for line in result.stderr.splitlines() if line.startswith("[esm] ") and "/s)" in line
    ]
    assert len(progress) >= 2
    assert all("shardId-000000000000" in line and "IteratorAge" in line for line in progress)


def test_help_lists_every_setting():
    result = subprocess.run(
        [sys.executable, "-m", "esm", "--help"], capture_output=True, text=True, check=True
    )
    for flag in (
        "--function-name",
        "--code-dir",
        "--until-idle",
        "--stream-arn",
        "--handler",
        "--timeout",
        "--batch-size",
        "--maximum-batching-window",
        "--starting-position",
        "--starting-position-timestamp",
        "--maximum-retry-attempts",
        "--maximum-record-age",
        "--bisect-batch-on-function-error",
        "--parallelization-factor",
        "--report-batch-item-failures",
        "--on-failure-destination",
        "--retry-backoff",
        "--poll-interval",
        "--state-dir",
        "--checkpoint-table",
    ):
        assert flag in result.stdout


def test_every_mapping_setting_is_read_from_the_lambda_api(harness):
    arn = harness.create_stream()
    _, queue_arn = harness.create_queue()
    function = harness.create_function("esm_handlers.record")
    mapping_uuid = harness.create_mapping(
        function,
        arn,
        StartingPosition="LATEST",  # moto leaves StartingPositionTimestamp out of its listing
        BatchSize=250,
        MaximumBatchingWindowInSeconds=3,
        MaximumRetryAttempts=4,
        MaximumRecordAgeInSeconds=120,
        BisectBatchOnFunctionError=True,
        ParallelizationFactor=5,
        FunctionResponseTypes=["ReportBatchItemFailures"],
        DestinationConfig={"OnFailure": {"Destination": queue_arn}},
    )

    (settings,) = load_mappings(harness.client("lambda"), function)

    assert settings == mapping(
        arn,
        batch_size=250,
        maximum_batching_window_s=3,
        starting_position=StartingPosition.LATEST,
        maximum_retry_attempts=4,
        maximum_record_age_s=120,
        bisect_batch_on_function_error=True,
        parallelization_factor=5,
        report_batch_item_failures=True,
        on_failure_destination_arn=queue_arn,
        uuid=mapping_uuid,
    )


def test_infinite_retries_last_until_the_records_expire(harness):
    # Given a batch that always fails, MaximumRetryAttempts -1 and a maximum age of 60 s,
    # with a runner clock that moves 7 s on every reading
    arn = harness.create_stream()
    harness.put([("k", "bad0"), ("k", "bad1")])
    queue_url, queue_arn = harness.create_queue()
    function = harness.create_function("esm_handlers.fail_on_bad")
    readings = itertools.count()

    harness.run(
        function,
        [
            mapping(
                arn,
                maximum_retry_attempts=-1,
                maximum_record_age_s=60,
                on_failure_destination_arn=queue_arn,
            )
        ],
        clock=lambda: time.time() + 7 * next(readings),
    )

    # Then it retried until the records were too old, then gave them up as expired
    invocations = harness.invocations()
    assert len(invocations) > 3
    assert all(e["data"] == ["bad0", "bad1"] for e in invocations)
    (failure,) = harness.messages(queue_url)
    assert failure["requestContext"]["condition"] == "RecordAgeExceeded"
    assert failure["requestContext"]["approximateInvokeCount"] == len(invocations)
    assert "responseContext" not in failure
    assert failure["KinesisBatchInfo"]["batchSize"] == 2


def test_exhausted_batch_without_a_destination_is_discarded_and_the_shard_moves_on(harness):
    arn = harness.create_stream()
    harness.put([("k", "bad"), ("k", "ok")])
    function = harness.create_function("esm_handlers.fail_on_bad")

    summary = harness.run(function, [mapping(arn, batch_size=1, maximum_retry_attempts=1)])

    assert [e["data"] for e in harness.invocations()] == [["bad"], ["bad"], ["ok"]]
    assert summary.shards[0]["retryAttemptsExhausted"] == 1
