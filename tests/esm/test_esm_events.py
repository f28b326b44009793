"""Event records as Lambda delivers them, built without a server."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest

from esm.settings import FunctionSettings
from esm.sources import KinesisSource, _epoch_or_parsed, event_payload
from processor.events import kinesis_event_record

FUNCTION = FunctionSettings(
    name="f",
    arn="arn:aws:lambda:us-east-2:123456789012:function:f",
    handler="m.h",
    role_arn="arn:aws:iam::123456789012:role/lambda-role",
)
STREAM_ARN = "arn:aws:kinesis:us-east-2:123456789012:stream/lambda-stream"


@pytest.mark.parametrize(
    "partition_key",
    [
        pytest.param("1", id="plain"),
        pytest.param('quote"back\\slash', id="json-escapes"),
        pytest.param("ké🙂", id="non-ascii"),
    ],
)
def test_kinesis_event_record_matches_the_documented_shape(partition_key):
    source = KinesisSource(STREAM_ARN, FUNCTION, client=None)
    arrival = datetime.fromtimestamp(1545084650.987, tz=UTC)
    record = source._record(
        "shardId-000000000006",
        {
            "SequenceNumber": "49590338271490256608559692538361571095921575989136588898",
            "ApproximateArrivalTimestamp": arrival,
            "Data": b"Hello, this is a test.",
            "PartitionKey": partition_key,
        },
    )
    # The example event of the Lambda developer guide (with-kinesis.html).
    assert json.loads(event_payload([record])) == {
        "Records": [
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": partition_key,
                    "sequenceNumber": "49590338271490256608559692538361571095921575989136588898",
                    "data": base64.b64encode(b"Hello, this is a test.").decode(),
                    "approximateArrivalTimestamp": 1545084650.987,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": "shardId-000000000006:"
                "49590338271490256608559692538361571095921575989136588898",
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/lambda-role",
                "awsRegion": "us-east-2",
                "eventSourceARN": STREAM_ARN,
            }
        ]
    }
    assert record.position == 49590338271490256608559692538361571095921575989136588898


@pytest.mark.parametrize(
    "encryption_type",
    [
        pytest.param(None, id="plain"),
        pytest.param("NONE", id="plain-said-so"),
        pytest.param("KMS", id="encrypted"),
    ],
)
@pytest.mark.parametrize(
    "partition_key", [pytest.param("k", id="ascii"), pytest.param('q"\\ké🙂', id="escapes")]
)
def test_fast_event_json_is_the_shared_kinesis_event_record(encryption_type, partition_key):
    # The runner writes a Kinesis record's JSON by hand, for speed: it must say exactly what
    # the one definition of the record (processor.events) says.
    source = KinesisSource(STREAM_ARN, FUNCTION, client=None)
    record = {
        "SequenceNumber": "49590338271490256608559692538361571095921575989136588898",
        "ApproximateArrivalTimestamp": 1545084650.987,
        "Data": b"\x00binary\xffdata",
        "PartitionKey": partition_key,
    }
    if encryption_type is not None:
        record["EncryptionType"] = encryption_type

    fast = source._event_json("shardId-000000000006", record, 1545084650.987)

    assert json.loads(fast) == kinesis_event_record(
        event_source_arn=STREAM_ARN,
        shard_id="shardId-000000000006",
        partition_key=partition_key,
        sequence_number="49590338271490256608559692538361571095921575989136588898",
        data=b"\x00binary\xffdata",
        arrival_s=1545084650.987,
        invoke_identity_arn=FUNCTION.role_arn,
        encryption_type=encryption_type,
    )


@pytest.mark.parametrize(
    "wire_value",
    [
        pytest.param(1545084650.987, id="epoch-number-as-the-runner-client-keeps-it"),
        pytest.param(datetime.fromtimestamp(1545084650.987, tz=UTC), id="botocore-datetime"),
    ],
)
def test_arrival_timestamp_is_the_same_from_an_epoch_number_or_a_datetime(wire_value):
    source = KinesisSource(STREAM_ARN, FUNCTION, client=None)
    record = source._record(
        "shardId-000000000006",
        {
            "SequenceNumber": "1",
            "ApproximateArrivalTimestamp": wire_value,
            "Data": b"x",
            "PartitionKey": "k",
        },
    )
    assert record.arrival_s == 1545084650.987
    assert json.loads(record.event_json)["kinesis"]["approximateArrivalTimestamp"] == 1545084650.987


def test_runner_client_keeps_epoch_numbers_and_parses_other_timestamps():
    assert _epoch_or_parsed(1545084650.987) == 1545084650.987
    assert _epoch_or_parsed("2018-12-17T22:10:50.987Z") == datetime(
        2018, 12, 17, 22, 10, 50, 987000, tzinfo=UTC
    )
