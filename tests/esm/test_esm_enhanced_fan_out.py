"""Conformance: an enhanced fan-out consumer as a Kinesis mapping's source.

Lambda takes "the ARN of the data stream or a stream consumer" as a Kinesis mapping's
EventSourceArn (https://docs.aws.amazon.com/lambda/latest/api/API_CreateEventSourceMapping.html,
https://docs.aws.amazon.com/lambda/latest/dg/with-kinesis-configure.html#services-kinesis-configure-efo).
The runner resolves the consumer with DescribeStreamConsumer and reads its stream with
GetRecords: no emulator here serves SubscribeToShard (the README says what differs).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import CODE_DIR, FAST_FLAGS, REPO_ROOT, mapping

from esm.settings import SettingsError
from esm.sources import is_consumer_arn, through_consumer

STREAM_ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/orders"


@pytest.mark.parametrize(
    ("arn", "expected"),
    [
        pytest.param(f"{STREAM_ARN}/consumer/fan:1525898737", True, id="aws-consumer"),
        pytest.param(f"{STREAM_ARN}/consumer/fan", True, id="moto-consumer-no-timestamp"),
        pytest.param(STREAM_ARN, False, id="stream"),
        pytest.param(
            "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/2024-01-01T00:00:00.000",
            False,
            id="dynamodb-stream",
        ),
        pytest.param(f"{STREAM_ARN}/consumer/", False, id="consumer-without-name"),
        pytest.param("not-an-arn", False, id="not-an-arn"),
    ],
)
def test_a_consumer_arn_is_told_from_a_stream_arn(arn, expected):
    assert is_consumer_arn(arn) is expected


def test_a_consumers_positions_are_apart_from_its_streams():
    # Given the same stream read directly and through a consumer, both given by flags
    direct = mapping(STREAM_ARN)
    through = mapping(STREAM_ARN, consumer_arn=f"{STREAM_ARN}/consumer/fan:1")

    # Then each keeps its own checkpoints
    assert direct.state_key != through.state_key


class _Kinesis:
    def __init__(self, status: str) -> None:
        self.status = status

    def describe_stream_consumer(self, ConsumerARN):  # noqa: N803 (boto3's spelling)
        return {
            "ConsumerDescription": {
                "ConsumerName": "fan",
                "ConsumerARN": ConsumerARN,
                "ConsumerStatus": self.status,
                "StreamARN": STREAM_ARN,
            }
        }


def test_a_consumer_not_yet_active_is_refused():
    consumer = f"{STREAM_ARN}/consumer/fan:1"
    with pytest.raises(SettingsError, match="fan is CREATING, not ACTIVE"):
        through_consumer(mapping(consumer), session=None, client=_Kinesis("CREATING"))


def test_a_stream_mapping_is_read_as_it_is():
    assert through_consumer(mapping(STREAM_ARN), session=None) == mapping(STREAM_ARN)


def _run(harness, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable, "-m", "esm", "run", *flags,
            "--code-dir", str(CODE_DIR), "--state-dir", str(harness.state_dir),
            "--until-idle", "0.3", *FAST_FLAGS,
        ],
        cwd=REPO_ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def _stream_with_consumer(harness) -> tuple[str, str]:
    """A stream and an enhanced fan-out consumer registered on it: (stream ARN, consumer ARN)."""
    stream_arn = harness.create_stream()
    consumer = harness.client("kinesis").register_stream_consumer(
        StreamARN=stream_arn, ConsumerName="fan"
    )
    return stream_arn, consumer["Consumer"]["ConsumerARN"]


def test_a_mapping_on_a_consumer_delivers_its_streams_records_in_order(harness):
    # Given a stream with a registered consumer, and a mapping whose source is the consumer
    stream_arn, consumer_arn = _stream_with_consumer(harness)
    function = harness.create_function("esm_handlers.record")
    harness.create_mapping(function, consumer_arn, StartingPosition="TRIM_HORIZON", BatchSize=2)
    harness.put([("k", f"r{n}") for n in range(5)])

    # When the runner runs the function's mappings
    result = _run(harness, "--function-name", function.name)

    # Then it read the stream through the consumer, every record once and in order, and the
    # records name the stream as their source
    assert result.returncode == 0, result.stderr
    assert f"on {stream_arn} through consumer {consumer_arn}" in result.stderr
    assert harness.delivered() == [f"r{n}" for n in range(5)]
    firsts = [entry["first"] for entry in harness.invocations()]
    assert {first["eventSourceARN"] for first in firsts} == {stream_arn}


def test_a_consumer_that_is_not_registered_is_refused_at_start(harness):
    # Given a stream, and a consumer ARN for it that was never registered
    stream_arn = harness.create_stream()
    consumer_arn = f"{stream_arn}/consumer/nobody:1"

    # When the runner is pointed at it
    result = _run(harness, "--stream-arn", consumer_arn, "--handler", "esm_handlers.record")

    # Then it says so in one line and exits 2, before anything runs
    assert result.returncode == 2
    assert f"cannot read {consumer_arn}: it is not at the endpoint" in result.stderr
    assert "Traceback" not in result.stderr
    assert harness.invocations() == []


def test_the_consumer_mapping_is_listed_with_its_consumer_arn(harness):
    # Lambda keeps the consumer's ARN as the mapping's source (the emulator does too)
    _, consumer_arn = _stream_with_consumer(harness)
    function = harness.create_function("esm_handlers.record")
    uuid = harness.create_mapping(function, consumer_arn, StartingPosition="LATEST")

    listed = harness.client("lambda").get_event_source_mapping(UUID=uuid)
    assert listed["EventSourceArn"] == consumer_arn
    assert listed["FunctionArn"].endswith(f":function:{function.name}")
