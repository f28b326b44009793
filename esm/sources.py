"""Stream sources: list shards, read records, shape them as Lambda delivers them.

One class per service, chosen from the event source ARN by table (``SOURCES``). Event
shapes follow the Lambda developer guide:
- Kinesis: https://docs.aws.amazon.com/lambda/latest/dg/with-kinesis.html
- DynamoDB Streams: https://docs.aws.amazon.com/lambda/latest/dg/with-ddb.html
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from botocore.parsers import DEFAULT_TIMESTAMP_PARSER, ResponseParserFactory

from esm.settings import FunctionSettings, MappingSettings, SettingsError
from processor.aws import parse_arn
from processor.events import (
    DYNAMODB_EVENT_SOURCE,
    KINESIS_EVENT_SOURCE,
    dynamodb_event_record,
    kinesis_event_record,
    wire_image,
)

# GetRecords' own maximum per call.
KINESIS_GET_RECORDS_LIMIT = 10000
DYNAMODB_GET_RECORDS_LIMIT = 1000


class StreamRecord:
    """One record as the runner handles it: its coordinates, and its event record as JSON.

    The JSON is built on first use, by the lane thread that sends the record, so the reader
    thread goes straight back to GetRecords (the two overlap while the reader waits on I/O).
    """

    __slots__ = ("sequence_number", "partition_key", "arrival_s", "data_size", "_json", "_build")

    def __init__(
        self,
        sequence_number: str,
        partition_key: str,
        arrival_s: float,
        event_json: str | Callable[[], str],
        data_size: int = 0,
    ) -> None:
        self.sequence_number = sequence_number
        self.partition_key = partition_key
        self.arrival_s = arrival_s
        self.data_size = data_size  # the payload's bytes, for bounding the read-ahead
        if isinstance(event_json, str):
            self._json, self._build = event_json, None
        else:
            self._json, self._build = None, event_json

    @property
    def event_json(self) -> str:
        """The record as it appears in the event's ``Records[]``."""
        if self._json is None:
            self._json = self._build()
            self._build = None
        return self._json

    @property
    def position(self) -> int:
        # Sequence numbers are decimal strings of varying length: compare as integers.
        return int(self.sequence_number)

    @property
    def size(self) -> int:
        return len(self.event_json)

    def __repr__(self) -> str:
        return f"StreamRecord({self.sequence_number!r}, {self.partition_key!r})"


@dataclass(frozen=True)
class Shard:
    shard_id: str
    parent_ids: tuple[str, ...]
    closed: bool  # has an ending sequence number: no more records will be added


@dataclass
class ReadResult:
    records: list[StreamRecord]
    next_iterator: str | None  # None: the shard is closed and read to its end
    millis_behind_latest: int | None


def event_payload(records: list[StreamRecord]) -> str:
    """The invocation payload: ``{"Records": [...]}`` built from the pre-serialised records."""
    return '{"Records":[' + ",".join(r.event_json for r in records) + "]}"


PAYLOAD_OVERHEAD_BYTES = len(event_payload([]))


def _epoch_s(value: datetime | float | int) -> float:
    return value.timestamp() if isinstance(value, datetime) else float(value)


class KinesisSource:
    """A Kinesis data stream. Calls use StreamName (kinesalite rejects StreamARN)."""

    event_source: ClassVar[str] = KINESIS_EVENT_SOURCE

    def __init__(self, stream_arn: str, function: FunctionSettings, client) -> None:
        arn = parse_arn(stream_arn)
        self.stream_arn = stream_arn
        self.stream_name = arn.resource_name
        self.region = arn.region
        self.client = client
        self._function = function

    def version(self) -> str | None:
        """Which incarnation of the stream this is: its creation time. A stream deleted and
        created again under the same name has the same ARN, and sequence numbers that start
        again (moto's from 1), so positions saved for the old one must not be resumed."""
        summary = self.client.describe_stream_summary(StreamName=self.stream_name)
        created = summary["StreamDescriptionSummary"].get("StreamCreationTimestamp")
        return None if created is None else f"{_epoch_s(created):.3f}"

    def list_shards(self) -> list[Shard]:
        shards, token = [], None
        while True:
            kwargs = {"NextToken": token} if token else {"StreamName": self.stream_name}
            page = self.client.list_shards(**kwargs)
            for shard in page["Shards"]:
                parents = tuple(
                    p for p in (shard.get("ParentShardId"), shard.get("AdjacentParentShardId")) if p
                )
                closed = "EndingSequenceNumber" in shard.get("SequenceNumberRange", {})
                shards.append(Shard(shard["ShardId"], parents, closed))
            token = page.get("NextToken")
            if not token:
                return shards

    def shard_iterator(
        self, shard_id: str, iterator_type: str, sequence_number=None, timestamp=None
    ) -> str:
        kwargs: dict[str, Any] = {
            "StreamName": self.stream_name,
            "ShardId": shard_id,
            "ShardIteratorType": iterator_type,
        }
        if sequence_number is not None:
            kwargs["StartingSequenceNumber"] = sequence_number
        if timestamp is not None:
            kwargs["Timestamp"] = timestamp
        return self.client.get_shard_iterator(**kwargs)["ShardIterator"]

    def read(self, shard_id: str, iterator: str, limit: int) -> ReadResult:
        response = self.client.get_records(
            ShardIterator=iterator, Limit=min(limit, KINESIS_GET_RECORDS_LIMIT)
        )
        records = [self._record(shard_id, r) for r in response["Records"]]
        return ReadResult(
            records, response.get("NextShardIterator"), response.get("MillisBehindLatest")
        )

    def _record(self, shard_id: str, record: dict[str, Any]) -> StreamRecord:
        # Lambda sends the arrival time as float seconds with millisecond precision.
        arrival_s = round(_epoch_s(record["ApproximateArrivalTimestamp"]), 3)
        return StreamRecord(
            record["SequenceNumber"],
            record["PartitionKey"],
            arrival_s,
            functools.partial(self._event_json, shard_id, record, arrival_s),
            len(record["Data"]),
        )

    def _event_json(self, shard_id: str, record: dict[str, Any], arrival_s: float) -> str:
        """The record in the event, shaped as Lambda delivers it. Assembled from pieces
        serialised once per stream, because this runs for every record (5x faster than
        json.dumps of the dict; tests/esm/test_esm_events.py checks that it parses back into
        exactly `_event_record`'s dict)."""
        sequence_number = record["SequenceNumber"]
        if record.get("EncryptionType") not in (None, "NONE"):
            return json.dumps(self._event_record(shard_id, record, arrival_s))
        return (
            '{"kinesis":{"kinesisSchemaVersion":"1.0","partitionKey":'
            + _json_string(record["PartitionKey"])
            + ',"sequenceNumber":'
            + _json_string(sequence_number)
            + ',"data":"'
            + base64.b64encode(record["Data"]).decode("ascii")
            + '","approximateArrivalTimestamp":'
            + repr(arrival_s)
            + '},"eventSource":"aws:kinesis","eventVersion":"1.0","eventID":'
            + _json_string(f"{shard_id}:{sequence_number}")
            + self._event_tail
        )

    @functools.cached_property
    def _event_tail(self) -> str:
        """The fields after eventID, the same for every record of the stream: taken from the
        one definition of the record, so that only the head above is written out by hand."""
        blank = {"SequenceNumber": "", "PartitionKey": "", "Data": b""}
        template = self._event_record("", blank, 0)
        names = list(template)
        tail = {name: template[name] for name in names[names.index("eventID") + 1 :]}
        return "," + json.dumps(tail, separators=(",", ":"))[1:]

    def _event_record(self, shard_id: str, record: dict[str, Any], arrival_s: float) -> dict:
        return kinesis_event_record(
            event_source_arn=self.stream_arn,
            shard_id=shard_id,
            partition_key=record["PartitionKey"],
            sequence_number=record["SequenceNumber"],
            data=record["Data"],
            arrival_s=arrival_s,
            invoke_identity_arn=self._function.role_arn,
            encryption_type=record.get("EncryptionType"),
        )


_json_string = json.JSONEncoder(separators=(",", ":")).encode


class DynamoDBStreamSource:
    """A DynamoDB table's stream (DynamoDB Streams API)."""

    event_source: ClassVar[str] = DYNAMODB_EVENT_SOURCE

    def __init__(self, stream_arn: str, function: FunctionSettings, client) -> None:
        self.stream_arn = stream_arn
        self.region = parse_arn(stream_arn).region
        self.client = client
        self._function = function

    def version(self) -> str | None:
        """None: a table's new stream has an ARN of its own (its label is its creation time)."""
        return None

    def list_shards(self) -> list[Shard]:
        shards, start = [], None
        while True:
            kwargs: dict[str, Any] = {"StreamArn": self.stream_arn}
            if start:
                kwargs["ExclusiveStartShardId"] = start
            description = self.client.describe_stream(**kwargs)["StreamDescription"]
            for shard in description.get("Shards", []):
                parents = (shard["ParentShardId"],) if shard.get("ParentShardId") else ()
                closed = "EndingSequenceNumber" in shard.get("SequenceNumberRange", {})
                shards.append(Shard(shard["ShardId"], parents, closed))
            start = description.get("LastEvaluatedShardId")
            if not start:
                return shards

    def shard_iterator(
        self, shard_id: str, iterator_type: str, sequence_number=None, timestamp=None
    ) -> str:
        kwargs: dict[str, Any] = {
            "StreamArn": self.stream_arn,
            "ShardId": shard_id,
            "ShardIteratorType": iterator_type,
        }
        if sequence_number is not None:
            kwargs["SequenceNumber"] = sequence_number
        return self.client.get_shard_iterator(**kwargs)["ShardIterator"]

    def read(self, shard_id: str, iterator: str, limit: int) -> ReadResult:
        response = self.client.get_records(
            ShardIterator=iterator, Limit=min(limit, DYNAMODB_GET_RECORDS_LIMIT)
        )
        records = [self._record(r) for r in response["Records"]]
        return ReadResult(records, response.get("NextShardIterator"), None)

    def _record(self, record: dict[str, Any]) -> StreamRecord:
        stream_record = dict(record["dynamodb"])
        created = stream_record.get("ApproximateCreationDateTime")
        arrival_s = _epoch_s(created) if created is not None else 0.0
        if created is not None:
            # Lambda delivers it as epoch seconds (a number), like the stream's wire format.
            stream_record["ApproximateCreationDateTime"] = float(int(arrival_s))
        for image in ("Keys", "NewImage", "OldImage"):
            if image in stream_record:
                stream_record[image] = wire_image(stream_record[image])
        event_record = dynamodb_event_record(
            event_source_arn=self.stream_arn,
            stream_record=stream_record,
            event_name=record["eventName"],
            event_id=record["eventID"],
            event_version=record.get("eventVersion", "1.1"),
            region=record.get("awsRegion", self.region),
            user_identity=record.get("userIdentity"),
        )
        keys = stream_record.get("Keys", {})
        partition_key = json.dumps(keys, sort_keys=True, separators=(",", ":"))
        event_json = json.dumps(event_record)
        return StreamRecord(
            stream_record["SequenceNumber"], partition_key, arrival_s, event_json, len(event_json)
        )


# Event sources by the service in their ARN.
SOURCES: dict[str, tuple[type, str]] = {
    "kinesis": (KinesisSource, "kinesis"),
    "dynamodb": (DynamoDBStreamSource, "dynamodbstreams"),
}


# An enhanced fan-out consumer: `arn:aws:kinesis:R:A:stream/STREAM/consumer/NAME:CREATED`
# (moto leaves out `:CREATED`). https://docs.aws.amazon.com/kinesis/latest/APIReference/API_DescribeStreamConsumer.html
_CONSUMER_RESOURCE = re.compile(r"stream/[^/]+/consumer/[^/]+")


def is_consumer_arn(arn: str) -> bool:
    try:
        parsed = parse_arn(arn)
    except ValueError:
        return False
    return parsed.service == "kinesis" and bool(_CONSUMER_RESOURCE.fullmatch(parsed.resource))


def through_consumer(mapping: MappingSettings, session, client=None) -> MappingSettings:
    """The mapping as the runner reads it: a consumer ARN source becomes its stream's ARN.

    Lambda accepts a consumer's ARN as a Kinesis mapping's source and then reads the stream
    through that consumer (SubscribeToShard). The runner resolves the consumer with
    DescribeStreamConsumer, so a consumer that is not there, or not ACTIVE, is refused before
    anything runs, and reads the stream itself with GetRecords: neither moto nor kinesalite
    serves SubscribeToShard (see the README). Records carry the stream's ARN as their
    eventSourceARN. A ResourceNotFoundException (ClientError) is the caller's to report.
    """
    arn = mapping.event_source_arn
    if not is_consumer_arn(arn):
        return mapping
    if client is None:
        client = session.client("kinesis", region_name=parse_arn(arn).region)
    consumer = client.describe_stream_consumer(ConsumerARN=arn)["ConsumerDescription"]
    status = consumer.get("ConsumerStatus")
    if status != "ACTIVE":
        raise SettingsError(f"consumer {consumer.get('ConsumerName')} is {status}, not ACTIVE")
    return dataclasses.replace(mapping, event_source_arn=consumer["StreamARN"], consumer_arn=arn)


def source_for(stream_arn: str, function: FunctionSettings, session, client=None):
    """The source object for an event source ARN; ``client`` defaults to one from ``session``."""
    try:
        arn = parse_arn(stream_arn)
        source_class, client_service = SOURCES[arn.service]
    except (ValueError, KeyError):
        raise ValueError(f"not a stream event source: {stream_arn}") from None
    if client is None:
        client = session.client(client_service, region_name=arn.region)
        _keep_epoch_timestamps(client)
    return source_class(stream_arn, function, client)


def _epoch_or_parsed(value: Any) -> Any:
    """Epoch numbers as they are on the wire; anything else as botocore parses it."""
    if isinstance(value, (int, float)):
        return value
    return DEFAULT_TIMESTAMP_PARSER(value)


def _keep_epoch_timestamps(client) -> None:
    """Have ``client`` hand back wire timestamps (epoch seconds) as numbers.

    By default botocore turns every record's arrival time into a tz-aware datetime (through
    dateutil, ~10 us a record), and ``_epoch_s`` turns it straight back: about a sixth of the
    reader thread's time on a busy shard, on the path that paces the whole shard. Only this
    client, which the runner built for itself, is changed: a caller's session and clients
    keep their datetimes. The parser factory is per endpoint and not public; if botocore
    moves it, records arrive as datetimes again, which ``_epoch_s`` still reads.
    """
    endpoint = getattr(client, "_endpoint", None)
    if endpoint is None or not hasattr(endpoint, "_response_parser_factory"):
        return
    factory = ResponseParserFactory()
    factory.set_parser_defaults(timestamp_parser=_epoch_or_parsed)
    endpoint._response_parser_factory = factory
