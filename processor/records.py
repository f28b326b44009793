"""Lambda stream events → `Record`s (or `Unparseable` items), in delivery order.

Kinesis records may be KPL aggregates: they are split into user records with the
aws-kinesis-agg protobuf definitions. aws-kinesis-agg's own deaggregator hands an aggregate
with a bad MD5 trailer back as if it were a plain record and only prints when a sub-record is
bad; here both are errors, so the record is parked instead of reaching user code.
https://github.com/awslabs/amazon-kinesis-producer/blob/master/aggregation-format.md
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any

import aws_kinesis_agg
from aws_kinesis_agg import deaggregator  # its import puts the generated protobuf modules on path
from boto3.dynamodb.types import Binary, TypeDeserializer
from google.protobuf.message import DecodeError

from processor.contracts import REPLAY_SUB_SEQUENCE_NUMBER
from processor.exceptions import CorruptAggregateError, InvalidEventError, RecordParseError

Position = tuple[int, int]
"""A user record's place in its shard: (sequence number, sub-sequence number), as integers."""


class Source(StrEnum):
    KINESIS = "kinesis"
    DYNAMODB = "dynamodb"


@dataclass(slots=True)
class Record:
    """One user record, ready for business logic (treat it as read-only).

    Not a frozen dataclass: frozen construction costs more than the rest of a record's
    parsing, on the per-record hot path.
    """

    source: Source
    event_source_arn: str
    shard_id: str
    partition_key: str
    sequence_number: str  # as AWS sent it (for KPL: the aggregate's)
    sub_sequence_number: int
    position: Position
    raw: dict = field(repr=False)
    # Kinesis data, decoded on first access (`data`): None until then. A plain record's key
    # and position come without decoding its payload.
    decoded: bytes | None = field(default=b"", repr=False)
    event_name: str | None = None  # DynamoDB: INSERT | MODIFY | REMOVE
    keys: dict | None = None
    new_image: dict | None = field(default=None, repr=False)
    old_image: dict | None = field(default=None, repr=False)
    replay: bool = False  # delivered by a replay tool (REPLAY_MARKER), not by the stream
    # The validated payload (processor/validation.py), read through `model`. Not set by
    # __init__ (no default): a processor without a model or schema pays nothing for it.
    _model: Any = field(init=False, repr=False, compare=False)

    @property
    def model(self) -> Any:
        """The payload as the processor's `model` parsed it (with only a `schema`: the
        validated JSON value), while `apply`/`fold` runs on this record (it is released when
        the function returns: keep what you need from it); None without either, and for a
        DynamoDB REMOVE."""
        try:
            return self._model
        except AttributeError:
            return None

    @property
    def data(self) -> bytes:
        """The Kinesis record's bytes. Decoded on first access: data that is not base64 raises
        RecordParseError then, which parks the record at once (it can never succeed)."""
        data = self.decoded
        if data is None:
            try:
                data = binascii.a2b_base64(self.raw["kinesis"]["data"], strict_mode=True)
            except (binascii.Error, ValueError) as exc:
                raise RecordParseError(
                    f"kinesis.data is not valid base64: {exc}",
                    sequence_number=self.sequence_number,
                ) from None
            self.decoded = data
        return data

    def json(self) -> Any:
        """The parsed payload: Kinesis data as JSON; DynamoDB's new image (old for REMOVE)."""
        if self.source is Source.KINESIS:
            return json.loads(self.data)
        return self.new_image if self.new_image is not None else self.old_image


@dataclass(frozen=True, slots=True)
class Unparseable:
    """A record that could not be parsed; it keeps whatever coordinates could be read."""

    source: Source | None
    event_source_arn: str
    shard_id: str
    partition_key: str
    sequence_number: str | None
    sub_sequence_number: int
    error: RecordParseError
    raw: dict = field(repr=False)

    @property
    def position(self) -> Position | None:
        if self.sequence_number is None:
            return None
        return (int(self.sequence_number), self.sub_sequence_number)


BatchItem = Record | Unparseable


def parse_event(event: dict) -> list[BatchItem]:
    """Every record of a Lambda stream event, in the order given (one shard per batch).

    This runs once per record of every batch, so a well-formed plain Kinesis record is
    parsed inline: its key and position are read without decoding its data (the data is
    decoded on first access), and the shard id is cut from the first record's eventID and
    reused while the next ones start with it. Its checks: a string partition key, an ASCII
    decimal sequence number (int() alone would accept signs, "_" and spaces), string data that
    does not start like a KPL aggregate (see _MAGIC_B64), no replayed sub-sequence number.
    Anything else takes the careful path, which says what is wrong.
    """
    records = event.get("Records") if isinstance(event, dict) else None
    if not isinstance(records, list):
        raise InvalidEventError("event has no 'Records' list: not a Kinesis or DynamoDB batch")
    return _parse_records(records)


def parse_record(raw: Any) -> list[BatchItem]:
    """The user records in one stream record: one, or several for a KPL aggregate."""
    return _parse_records([raw])


def _parse_records(records: list) -> list[BatchItem]:
    items: list[BatchItem] = []
    append = items.append
    shard_prefix, shard_id = None, ""
    for raw in records:
        try:
            if raw["eventSource"] == "aws:kinesis":
                kinesis = raw["kinesis"]
                sequence_number = kinesis["sequenceNumber"]
                partition_key = kinesis["partitionKey"]
                data = kinesis["data"]
                if (
                    type(sequence_number) is str
                    and type(partition_key) is str
                    and type(data) is str
                    and sequence_number.isdigit()
                    and sequence_number.isascii()
                    and not data.startswith(_MAGIC_B64)
                    and _SUB_SEQUENCE_FIELD not in kinesis
                ):
                    event_id = raw["eventID"]
                    if shard_prefix is None or not event_id.startswith(shard_prefix):
                        shard_id = event_id[: event_id.index(":")]
                        shard_prefix = shard_id + ":"
                    append(
                        Record(
                            _KINESIS,
                            raw.get("eventSourceARN", ""),
                            shard_id,
                            partition_key,
                            sequence_number,
                            0,
                            (int(sequence_number), 0),
                            raw,
                            None,
                        )
                    )
                    continue
        except (TypeError, KeyError, ValueError, AttributeError):
            pass  # the careful path says what is wrong (an eventID that is not a string, say)
        items.extend(_parse_carefully(raw))
    return items


def _parse_carefully(raw: Any) -> list[BatchItem]:
    if not isinstance(raw, dict):
        return [_unparseable(None, {"record": raw}, RecordParseError("record is not an object"))]
    parser = _PARSERS.get(raw.get("eventSource"))
    if parser is None:
        error = RecordParseError(f"unsupported eventSource {raw.get('eventSource')!r}")
        return [_unparseable(None, raw, error)]
    return parser(raw)


# --- Kinesis -------------------------------------------------------------------------------


def _parse_kinesis_carefully(raw: dict) -> list[BatchItem]:
    kinesis = raw.get("kinesis")
    if not isinstance(kinesis, dict):
        return [_unparseable(Source.KINESIS, raw, RecordParseError("record has no 'kinesis'"))]
    sequence_number = kinesis.get("sequenceNumber")
    partition_key = kinesis.get("partitionKey")
    try:
        _check_sequence_number(sequence_number)
        if type(partition_key) is not str:
            raise RecordParseError("kinesis.partitionKey is missing")
        data = _b64decode(kinesis.get("data"))
        aggregated = data[:4] == _MAGIC and _deaggregate(data)
        sub_sequence_number = _replayed_sub_sequence_number(kinesis, aggregated)
    except RecordParseError as exc:
        exc.sequence_number = sequence_number if isinstance(sequence_number, str) else None
        return [_unparseable(Source.KINESIS, raw, exc)]
    arn = raw.get("eventSourceARN", "")
    shard_id = _kinesis_shard_id(raw)
    try:
        sequence = int(sequence_number)
    except ValueError:
        error = RecordParseError(f"sequence number {sequence_number!r} is not a decimal string")
        return [_unparseable(Source.KINESIS, raw, error)]
    if not aggregated:
        return [
            Record(
                Source.KINESIS,
                arn,
                shard_id,
                partition_key,
                sequence_number,
                sub_sequence_number,
                (sequence, sub_sequence_number),
                raw,
                data,
            )
        ]
    return [
        Record(
            Source.KINESIS,
            arn,
            shard_id,
            key,
            sequence_number,
            sub_sequence_number,
            (sequence, sub_sequence_number),
            raw,
            payload,
        )
        for sub_sequence_number, (key, payload) in enumerate(aggregated)
    ]


_MAGIC = aws_kinesis_agg.MAGIC
# The base64 of the magic's first three bytes: the first four characters of any aggregate.
_MAGIC_B64 = base64.b64encode(_MAGIC[:3]).decode("ascii")
_KINESIS = Source.KINESIS  # enum attribute lookups are slow on the hot path
_SUB_SEQUENCE_FIELD = REPLAY_SUB_SEQUENCE_NUMBER


def _replayed_sub_sequence_number(kinesis: dict, aggregated: Any) -> int:
    """The sub-sequence number a replay tool carried for one KPL user record, else 0."""
    if _SUB_SEQUENCE_FIELD not in kinesis:
        return 0
    value = kinesis[_SUB_SEQUENCE_FIELD]
    if type(value) is not int or value < 0:
        raise RecordParseError(f"kinesis.{_SUB_SEQUENCE_FIELD} {value!r} is not an integer >= 0")
    if aggregated:
        raise RecordParseError(
            f"kinesis.{_SUB_SEQUENCE_FIELD} names one user record, but the data is an aggregate"
        )
    return value


def _deaggregate(data: bytes) -> list[tuple[str, bytes]]:
    """(partition key, data) of each user record in a KPL aggregate, or raise."""
    body = data[len(aws_kinesis_agg.MAGIC) :]
    if len(body) <= aws_kinesis_agg.DIGEST_SIZE:
        raise CorruptAggregateError("KPL aggregate is truncated: no room for the MD5 trailer")
    message, digest = body[: -aws_kinesis_agg.DIGEST_SIZE], body[-aws_kinesis_agg.DIGEST_SIZE :]
    if hashlib.md5(message).digest() != digest:
        raise CorruptAggregateError("KPL aggregate MD5 trailer does not match its body")
    aggregate = deaggregator.messages_pb2.AggregatedRecord()
    try:
        aggregate.ParseFromString(message)
    except DecodeError as exc:
        raise CorruptAggregateError(f"KPL aggregate protobuf does not decode: {exc}") from exc
    keys = aggregate.partition_key_table
    if not aggregate.records:
        raise CorruptAggregateError("KPL aggregate holds no user records")
    user_records = []
    for index, sub in enumerate(aggregate.records):
        if not 0 <= sub.partition_key_index < len(keys):
            raise CorruptAggregateError(
                f"KPL sub-record {index} points at partition key {sub.partition_key_index}, "
                f"but the table has {len(keys)}"
            )
        user_records.append((keys[sub.partition_key_index], sub.data))
    return user_records


def _kinesis_shard_id(raw: dict) -> str:
    # eventID is "shardId-000000000000:<sequence number>"; Lambda sends no other shard field.
    event_id = raw.get("eventID")
    if isinstance(event_id, str):
        shard_id, colon, _ = event_id.partition(":")
        if colon:
            return shard_id
    return ""


def _b64decode(value: Any) -> bytes:
    if not isinstance(value, str):
        raise RecordParseError("kinesis.data is missing or not a string")
    try:
        # strict_mode rejects what validate=True rejects, without b64decode's regex pass.
        return binascii.a2b_base64(value, strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise RecordParseError(f"kinesis.data is not valid base64: {exc}") from exc


def _is_decimal(value: Any) -> bool:
    return isinstance(value, str) and value.isascii() and value.isdigit()


def _check_sequence_number(value: Any) -> None:
    if not _is_decimal(value):
        raise RecordParseError(f"sequence number {value!r} is not a decimal string")


# --- DynamoDB Streams ------------------------------------------------------------------------

_deserializer = TypeDeserializer()


def _parse_dynamodb(raw: dict) -> list[BatchItem]:
    stream_record = raw.get("dynamodb")
    if not isinstance(stream_record, dict):
        return [_unparseable(Source.DYNAMODB, raw, RecordParseError("record has no 'dynamodb'"))]
    sequence_number = stream_record.get("SequenceNumber")
    keys = None
    try:
        # The key first: a record whose image is broken is still its item's record, held
        # behind the item's earlier failures and checkpointed with them.
        keys = _image(stream_record, "Keys", required=True)
        _check_sequence_number(sequence_number)
        event_name = raw.get("eventName")
        if event_name not in ("INSERT", "MODIFY", "REMOVE"):
            raise RecordParseError(f"eventName {event_name!r} is not INSERT, MODIFY or REMOVE")
        new_image = _image(stream_record, "NewImage")
        old_image = _image(stream_record, "OldImage")
    except RecordParseError as exc:
        exc.sequence_number = sequence_number if isinstance(sequence_number, str) else None
        key = serialise_key(keys) if keys is not None else None
        return [_unparseable(Source.DYNAMODB, raw, exc, partition_key=key)]
    record = Record(
        source=Source.DYNAMODB,
        event_source_arn=raw.get("eventSourceARN", ""),
        # A DynamoDB Streams event names no shard. An item's records reach the stream in the
        # order of its modifications, with growing sequence numbers, so the item key alone
        # orders them: https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Streams.html
        shard_id="",
        partition_key=serialise_key(keys),
        sequence_number=sequence_number,
        sub_sequence_number=0,
        position=(int(sequence_number), 0),
        event_name=event_name,
        keys=keys,
        new_image=new_image,
        old_image=old_image,
        raw=raw,
    )
    return [record]


def _image(stream_record: dict, name: str, required: bool = False) -> dict | None:
    image = stream_record.get(name)
    if image is None and not required:
        return None
    if not isinstance(image, dict) or (required and not image):
        raise RecordParseError(f"dynamodb.{name} is missing or not a map")
    try:
        return {
            attr: plain(_deserializer.deserialize(_binary_decoded(value)))
            for attr, value in image.items()
        }
    except (
        TypeError,
        ValueError,
        AttributeError,
        KeyError,
        ArithmeticError,
        binascii.Error,
    ) as exc:
        raise RecordParseError(f"dynamodb.{name} is malformed: {exc}") from exc


def _binary_decoded(value: Any) -> Any:
    """An attribute value with its B / BS members as bytes, as TypeDeserializer wants them.

    Lambda's JSON event carries binary attributes as base64 strings (the DynamoDB Streams
    record shape: https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_AttributeValue.html).
    A value that is not strict base64 raises binascii.Error: a malformed image.
    """
    if type(value) is not dict or len(value) != 1:
        return value  # the deserializer says what is wrong
    ((tag, inner),) = value.items()
    if tag == "B" and type(inner) is str:
        return {"B": binascii.a2b_base64(inner, strict_mode=True)}
    if tag == "BS" and type(inner) is list:
        return {
            "BS": [binascii.a2b_base64(v, strict_mode=True) if type(v) is str else v for v in inner]
        }
    if tag == "M" and type(inner) is dict:
        return {"M": {k: _binary_decoded(v) for k, v in inner.items()}}
    if tag == "L" and type(inner) is list:
        return {"L": [_binary_decoded(v) for v in inner]}
    return value


def plain(value: Any) -> Any:
    """TypeDeserializer's output with integral Decimals as int and Binary as bytes."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else value
    if isinstance(value, Binary):
        return bytes(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, set):
        return {plain(v) for v in value}
    return value


def serialise_key(keys: dict) -> str:
    """An item key as a stable string: JSON with sorted attribute names."""
    return json.dumps(keys, sort_keys=True, separators=(",", ":"), default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, set):
        return sorted(value, key=str)
    raise TypeError(f"cannot serialise {type(value).__name__}")


# --- shared ------------------------------------------------------------------------------------


def _unparseable(
    source: Source | None, raw: dict, error: RecordParseError, partition_key: str | None = None
) -> Unparseable:
    kinesis = raw.get("kinesis") if isinstance(raw.get("kinesis"), dict) else {}
    stream_record = raw.get("dynamodb") if isinstance(raw.get("dynamodb"), dict) else {}
    # Only a decimal string is a sequence number: anything else would break the position
    # and the response for the whole batch.
    sequence_number = error.sequence_number
    if not _is_decimal(sequence_number):
        candidate = kinesis.get("sequenceNumber") or stream_record.get("SequenceNumber")
        sequence_number = candidate if _is_decimal(candidate) else None
    if partition_key is None:
        partition_key = kinesis.get("partitionKey")
    if not isinstance(partition_key, str):
        # Keys that do not deserialise: their wire form is the best key there is. Such a
        # record cannot be matched with its item's other records (they parse).
        keys = stream_record.get("Keys")
        partition_key = json.dumps(keys, sort_keys=True) if isinstance(keys, dict) else ""
    return Unparseable(
        source=source,
        event_source_arn=str(raw.get("eventSourceARN", "")),
        shard_id=_kinesis_shard_id(raw) if source is Source.KINESIS else "",
        partition_key=partition_key,
        sequence_number=sequence_number,
        sub_sequence_number=0,
        error=error,
        raw=raw,
    )


_PARSERS: dict[str, Callable[[dict], list[BatchItem]]] = {
    "aws:kinesis": _parse_kinesis_carefully,
    "aws:dynamodb": _parse_dynamodb,
}
