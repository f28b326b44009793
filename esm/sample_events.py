"""Sample Lambda stream events: what ``python -m esm event kinesis|dynamodb`` prints.

One batch from one shard, as Lambda delivers it (a batch never mixes shards): the records are
built by ``processor.events``, the same builders the runner uses, so a sample has exactly the
shape a handler gets from the runner. By default each record carries the demo app's event
(``processor.contracts.DemoEvent``: ``{key, n, payload}``, n = 1, 2, 3... per key), so the
output feeds the demo handler as it is. ``--model MODULE:CLASS`` generates the payloads from
a pydantic model instead (``model_payloads``), each checked by the model.

- Kinesis: https://docs.aws.amazon.com/lambda/latest/dg/with-kinesis.html (sample event)
- DynamoDB Streams: https://docs.aws.amazon.com/lambda/latest/dg/with-ddb.html (sample event)
"""

from __future__ import annotations

import contextlib
import enum
import importlib
import json
import os
import random
import string
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from boto3.dynamodb.types import TypeSerializer

from processor.aws import parse_arn
from processor.contracts import DemoEvent
from processor.events import dynamodb_event_record, kinesis_event_record, wire_attribute_value
from processor.testing import kpl_aggregate

# Named like the Terraform stack's resources (var.name = "streamline").
KINESIS_STREAM_ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/streamline-events"
DYNAMODB_STREAM_ARN = (
    "arn:aws:dynamodb:us-east-1:123456789012:table/streamline-source/stream/2024-01-01T00:00:00.000"
)
ROLE_ARN = "arn:aws:iam::123456789012:role/streamline-processor"
KINESIS_SHARD_ID = "shardId-000000000000"
# The demo's source table is keyed by `pk` alone (infra/terraform/streams.tf).
DYNAMODB_KEY_ATTRIBUTE = "pk"

# Sequence numbers in the style each service hands out, growing along the shard. The Kinesis
# ones start at the developer guide's sample (56 digits) and step as its two samples do.
KINESIS_FIRST_SEQUENCE_NUMBER = 49590338271490256608559692538361571095921575989136588898
KINESIS_SEQUENCE_STEP = 2564131663402632534000926720
# DynamoDB Streams: 21-digit numbers, as in the Streams API reference's examples.
DYNAMODB_FIRST_SEQUENCE_NUMBER = 300000000000000499659
DYNAMODB_SEQUENCE_STEP = 100000
# Arrival times: the records arrived this far apart, the last one just now.
ARRIVAL_SPACING_S = 0.05

DEFAULT_RECORDS = 3
# Lambda's largest batch for a stream mapping.
MAX_RECORDS = 10000
# A Kinesis record holds at most 1 MiB (partition key included); an aggregate is one record.
MAX_AGGREGATE_BYTES = 1024 * 1024 - 256
DEMO_PAYLOAD_SIZE = 16

_serializer = TypeSerializer()


class SampleError(ValueError):
    """A sample that cannot be built as asked: one line says why."""


class EventName(enum.Enum):
    INSERT = "INSERT"
    MODIFY = "MODIFY"
    REMOVE = "REMOVE"
    MIX = "mix"  # a key's first record INSERT, later ones MODIFY: what PutItem writes do


@dataclass(frozen=True)
class SampleRecord:
    """One user record of the sample: a demo event, or a payload given by the user."""

    key: str
    demo: DemoEvent | None = None
    payload: Any = field(default=None)

    def data(self) -> bytes:
        """The Kinesis record's data."""
        if self.demo is not None:
            return self.demo.data()
        return json.dumps(self.payload, separators=(",", ":")).encode("utf-8")

    def item(self) -> dict[str, dict]:
        """The table item (wire form); a user payload without the key attribute gets it."""
        if self.demo is not None:
            return self.demo.item()
        if not isinstance(self.payload, dict):
            raise SampleError(f"a DynamoDB item must be a JSON object, got {self.payload!r}")
        # DynamoDB numbers are decimals: floats go through their JSON text, not binary.
        payload = json.loads(json.dumps(self.payload), parse_float=Decimal)
        values = {DYNAMODB_KEY_ATTRIBUTE: self.key} | payload
        try:
            return {
                name: wire_attribute_value(_serializer.serialize(value))
                for name, value in values.items()
            }
        except TypeError as exc:
            raise SampleError(f"not a DynamoDB item: {exc}") from None


def key_names(keys: int) -> list[str]:
    """`k-0001`, `k-0002`...: the demo load's key names."""
    width = max(4, len(str(keys)))
    return [f"k-{i + 1:0{width}d}" for i in range(keys)]


def sample_records(
    count: int,
    keys: int,
    *,
    payloads: Sequence[Any] | None = None,
    poison_every: int = 0,
) -> list[SampleRecord]:
    """`count` records over `keys` keys, round robin, n = 1, 2, 3... per key.

    Without `payloads` each is a demo event; with them, record i carries `payloads[i]` (one
    payload repeated, or one per line of a file). `poison_every` = N marks the Nth, 2Nth...
    record as the demo's poison (`"poison": true`)."""
    if not 1 <= count <= MAX_RECORDS:
        raise SampleError(f"a batch holds 1 to {MAX_RECORDS} records, got {count}")
    if keys < 1:
        raise SampleError(f"need at least one key, got {keys}")
    if payloads is not None and len(payloads) != count:
        raise SampleError(f"{len(payloads)} payloads for {count} records")
    names = key_names(keys)
    rng = random.Random(1)  # the same payloads every time: samples are easy to compare
    alphabet = string.ascii_letters + string.digits
    records = []
    for i in range(count):
        key = names[i % keys]
        poison = poison_every > 0 and (i + 1) % poison_every == 0
        if payloads is None:
            payload = "".join(rng.choices(alphabet, k=DEMO_PAYLOAD_SIZE))
            records.append(SampleRecord(key, DemoEvent(key, i // keys + 1, payload, poison)))
            continue
        payload = payloads[i]
        if poison:
            if not isinstance(payload, dict):
                raise SampleError(f"--poison-every marks JSON objects, got {payload!r}")
            payload = payload | {"poison": True}
        records.append(SampleRecord(key, payload=payload))
    return records


def parse_payload(text: str, where: str) -> Any:
    """One JSON payload."""
    try:
        return json.loads(text)
    except ValueError as exc:
        raise SampleError(f"{where} is not JSON: {exc}") from None


def kinesis_event(
    records: Sequence[SampleRecord],
    *,
    aggregate_max_records: int = 0,
    event_source_arn: str = KINESIS_STREAM_ARN,
    now_s: float | None = None,
) -> dict[str, Any]:
    """A Kinesis batch from one shard. With `aggregate_max_records` > 0 consecutive user
    records are packed into KPL aggregates of at most that many (the aggregate's partition
    key is its first user record's, as the KPL sets it)."""
    units = [(r.key, r.data()) for r in records]
    if aggregate_max_records > 0:
        units = [
            _aggregate(units[start : start + aggregate_max_records])
            for start in range(0, len(units), aggregate_max_records)
        ]
    now_s = time.time() if now_s is None else now_s
    last = len(units) - 1
    return {
        "Records": [
            kinesis_event_record(
                event_source_arn=event_source_arn,
                shard_id=KINESIS_SHARD_ID,
                partition_key=key,
                sequence_number=str(KINESIS_FIRST_SEQUENCE_NUMBER + i * KINESIS_SEQUENCE_STEP),
                data=data,
                # Lambda sends arrival times in seconds with millisecond precision.
                arrival_s=round(now_s - (last - i) * ARRIVAL_SPACING_S, 3),
                invoke_identity_arn=ROLE_ARN,
            )
            for i, (key, data) in enumerate(units)
        ]
    }


def _aggregate(user_records: list[tuple[str, bytes]]) -> tuple[str, bytes]:
    size = sum(len(key) + len(data) for key, data in user_records)
    if size > MAX_AGGREGATE_BYTES:
        raise SampleError(
            f"an aggregate of {len(user_records)} records would pass Kinesis' 1 MiB record "
            "limit: lower --aggregate-max-records"
        )
    return user_records[0][0], kpl_aggregate(user_records)


def dynamodb_event(
    records: Sequence[SampleRecord],
    *,
    event_name: EventName = EventName.MIX,
    event_source_arn: str = DYNAMODB_STREAM_ARN,
    now_s: float | None = None,
) -> dict[str, Any]:
    """A DynamoDB Streams batch from one shard, with the images a NEW_AND_OLD_IMAGES stream
    gives: INSERT has NewImage, MODIFY NewImage and OldImage (the key's previous item in
    this batch, else an item holding only its key), REMOVE OldImage."""
    now_s = time.time() if now_s is None else now_s
    previous: dict[str, dict[str, dict]] = {}
    event_records = []
    for i, record in enumerate(records):
        item = record.item()
        keys = {DYNAMODB_KEY_ATTRIBUTE: item[DYNAMODB_KEY_ATTRIBUTE]}
        key = json.dumps(keys, sort_keys=True)
        name = event_name
        if name is EventName.MIX:
            name = EventName.MODIFY if key in previous else EventName.INSERT
        images = _IMAGES[name](item, previous.get(key, keys))
        if name is EventName.REMOVE:
            previous.pop(key, None)
        else:
            previous[key] = item
        stream_record: dict[str, Any] = {
            # Lambda delivers it as epoch seconds (a number), whole seconds.
            "ApproximateCreationDateTime": float(int(now_s)),
            "Keys": keys,
            **images,
            "SequenceNumber": str(DYNAMODB_FIRST_SEQUENCE_NUMBER + i * DYNAMODB_SEQUENCE_STEP),
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        }
        # The stream record's size; close to what DynamoDB counts (names and values).
        stream_record["SizeBytes"] = len(json.dumps({"Keys": keys, **images}).encode())
        event_records.append(
            dynamodb_event_record(
                event_source_arn=event_source_arn,
                stream_record=stream_record,
                event_name=name.value,
            )
        )
    return {"Records": event_records}


_IMAGES: dict[EventName, Callable[[dict, dict], dict[str, dict]]] = {
    EventName.INSERT: lambda item, old: {"NewImage": item},
    EventName.MODIFY: lambda item, old: {"NewImage": item, "OldImage": old},
    EventName.REMOVE: lambda item, old: {"OldImage": item},
}


def check_event_source_arn(arn: str, service: str) -> str:
    """The ARN, if it is one of `service`'s streams; else SampleError."""
    try:
        parsed = parse_arn(arn)
    except ValueError as exc:
        raise SampleError(f"--event-source-arn: {exc}") from None
    if parsed.service != service or "stream/" not in parsed.resource:
        raise SampleError(f"--event-source-arn: not a {service} stream ARN: {arn}")
    return arn


# --- payloads from a model ------------------------------------------------------------------


def model_payloads(spec: str, count: int, code_dir: Path | None = None) -> list[Any]:
    """`count` payloads for the pydantic model named `MODULE:CLASS` (any type pydantic
    validates), made from its JSON schema by simple per-type rules (the smallest value the
    bounds allow, counting up per record; enums and unions in turn) and each checked by the
    model. SampleError when the model cannot be imported or a payload does not pass (a
    `pattern`, say, which these rules do not follow: use --data-file then). The module is
    imported from `code_dir` first, as `run` and `invoke` import the handler (a console
    script's path does not hold the current directory)."""
    from pydantic import TypeAdapter, ValidationError

    module_name, colon, name = spec.partition(":")
    if not colon or not module_name or not name:
        raise SampleError(f"--model takes MODULE:CLASS, got {spec!r}")
    try:
        with _importable_from(code_dir):
            model = getattr(importlib.import_module(module_name), name)
        adapter = TypeAdapter(model)
        schema = adapter.json_schema()
    except Exception as exc:  # an import runs the user's module: whatever it raises
        raise SampleError(f"--model {spec}: {type(exc).__name__}: {exc}") from None
    payloads = []
    for index in range(count):
        payload = _example(schema, schema.get("$defs", {}), index)
        try:
            adapter.validate_python(payload)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(map(str, first["loc"])) or "the payload"
            raise SampleError(
                f"--model {spec}: cannot generate a valid payload ({where}: {first['msg']}); "
                "give payloads with --data-file"
            ) from None
        payloads.append(payload)
    return payloads


def _example(schema: dict, defs: dict, index: int) -> Any:
    """A value for `schema`; `index` (the record's) varies it from record to record."""
    if "$ref" in schema:
        return _example(defs.get(schema["$ref"].rsplit("/", 1)[-1], {}), defs, index)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][index % len(schema["enum"])]
    for union in ("anyOf", "oneOf"):
        options = [o for o in schema.get(union, ()) if o.get("type") != "null"]
        if options:
            return _example(options[index % len(options)], defs, index)
    if schema.get("allOf"):
        return _example(schema["allOf"][0], defs, index)
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    return _EXAMPLES.get(kind, lambda schema, defs, index: None)(schema, defs, index)


def _integer(schema: dict, defs: dict, index: int) -> int:
    low = schema.get("minimum", schema.get("exclusiveMinimum", 0) + 1)
    high = schema.get("maximum", schema.get("exclusiveMaximum", low + index + 2) - 1)
    return min(int(low) + index, int(high))


def _string(schema: dict, defs: dict, index: int) -> str:
    formats = {
        "date-time": "2024-01-01T00:00:00Z",
        "date": "2024-01-01",
        "uuid": f"00000000-0000-4000-8000-{index:012d}",
        "email": f"user{index}@example.com",
    }
    if schema.get("format") in formats:
        return formats[schema["format"]]
    text = f"{schema.get('title', 'value').lower().replace(' ', '-')}-{index + 1}"
    text = text.ljust(schema.get("minLength", 0), "x")
    return text[: schema.get("maxLength", len(text))]


def _array(schema: dict, defs: dict, index: int) -> list:
    items = schema.get("items", {})
    return [_example(items, defs, index) for _ in range(max(1, schema.get("minItems", 1)))]


def _object(schema: dict, defs: dict, index: int) -> dict:
    return {
        name: _example(prop, defs, index) for name, prop in schema.get("properties", {}).items()
    }


_EXAMPLES: dict[str, Callable[[dict, dict, int], Any]] = {
    "object": _object,
    "array": _array,
    "string": _string,
    "integer": _integer,
    "number": lambda schema, defs, index: float(_integer(schema, defs, index)),
    "boolean": lambda schema, defs, index: False,
    "null": lambda schema, defs, index: None,
}


@contextlib.contextmanager
def _importable_from(code_dir: Path | None) -> Iterator[None]:
    """Modules under `code_dir` importable while inside (first on the path, as PYTHONPATH
    puts a handler's code directory for the runner's workers)."""
    if code_dir is None:
        yield
        return
    entry = str(code_dir.resolve())
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        sys.path.remove(entry)


def _payloads(
    data: str | None,
    data_file: str | None,
    records: int | None,
    model: str | None = None,
    code_dir: Path | None = None,
) -> list[Any] | None:
    """The user's payloads: `data` once per record, one per line of `data_file`, or made
    from `model`."""
    if model is not None:
        return model_payloads(model, records or DEFAULT_RECORDS, code_dir)
    if data is not None:
        return [parse_payload(data, "--data")] * (records or DEFAULT_RECORDS)
    if data_file is None:
        return None
    if records is not None:
        raise SampleError("--data-file gives one record per line: leave out --records")
    try:
        with open(data_file, encoding="utf-8") as lines:
            texts = [(n, line) for n, line in enumerate(lines, 1) if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise SampleError(f"cannot read --data-file {data_file}: {exc}") from None
    if not texts:
        raise SampleError(f"--data-file {data_file} holds no payloads")
    return [parse_payload(text, f"{data_file} line {n}") for n, text in texts]


# Event builders by source (the ARN's service), with the options each takes from the command.
_BUILDERS: dict[str, tuple[Callable[..., dict[str, Any]], Callable[[Any], dict[str, Any]]]] = {
    "kinesis": (
        kinesis_event,
        lambda args: {"aggregate_max_records": args.aggregate_max_records if args.aggregate else 0},
    ),
    "dynamodb": (dynamodb_event, lambda args: {"event_name": EventName(args.event_name)}),
}


def build(args) -> dict[str, Any]:
    """The event the `event` command's arguments ask for; SampleError if it cannot be."""
    payloads = _payloads(
        args.data,
        args.data_file,
        args.records,
        getattr(args, "model", None),
        getattr(args, "code_dir", None),
    )
    count = len(payloads) if payloads is not None else (args.records or DEFAULT_RECORDS)
    records = sample_records(count, args.keys, payloads=payloads, poison_every=args.poison_every)
    builder, options_of = _BUILDERS[args.source]
    options = options_of(args)
    if args.event_source_arn:
        options["event_source_arn"] = check_event_source_arn(args.event_source_arn, args.source)
    return builder(records, **options)


def command(args) -> int:
    """`python -m esm event`: the event as JSON on stdout; a bad request is one line, exit 2."""
    try:
        event = build(args)
    except SampleError as exc:
        print(f"[esm] cannot build the event: {exc}", file=sys.stderr)
        return 2
    try:
        sys.stdout.write(json.dumps(event, indent=2) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader stopped early (`| head`): nothing more to say, and no traceback at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0
