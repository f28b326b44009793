"""Re-drive parked records: from the poison queue and from the ESM's on-failure queue.

- A poison message (`PoisonMessage`) carries the record itself (Kinesis `data`, DynamoDB
  `dynamodb`); when it was truncated to fit SQS, the record is read back from the stream
  by its coordinates.
- An on-failure message (`OnFailureRecord`, Lambda's own) holds only stream coordinates: the
  batch is read back from the shard, from startSequenceNumber through endSequenceNumber
  (GetShardIterator AT_SEQUENCE_NUMBER), while the stream still retains it.
  https://docs.aws.amazon.com/lambda/latest/dg/kinesis-on-failure-destination.html

Each message's records then go either to a handler (`--to-handler module.function`, called
with a Lambda-shaped event and context) or back onto their source (`--to-stream`: PutRecords
on the Kinesis stream; for a DynamoDB stream the item is written again, which puts it on the
table's stream). A message is deleted only after its records were re-driven successfully;
the others are made visible again. Messages are re-driven in stream order.

Events sent `--to-handler` carry `REPLAY_MARKER` (`"streamlineReplay": true`). A handler
built on OrderedProcessor then applies each parked record once more (exactly once when it
returns transaction items), skips records it had applied, leaves checkpoints and attempt
counters alone, and reports a record that fails again instead of parking it a second time
(the message then stays on its queue). `--to-stream` gives the records new positions instead.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import importlib
import json
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import boto3
from botocore.exceptions import ClientError

from processor.contracts import REPLAY_MARKER, OnFailureRecord, PoisonMessage, StreamBatchInfo
from scripts.load import (
    MAX_BYTES_PER_PUT,
    MAX_RECORDS_PER_PUT,
    Unit,
    plan_batches,
    put_records_resending_failures,
)
from scripts.stack import add_stack_arguments, resolve_stack

# Messages stay hidden this long while this run works on them.
DEFAULT_VISIBILITY_TIMEOUT_S = 300
DEFAULT_HANDLER_TIMEOUT_S = 300
HANDLER_BATCH_SIZE = 100
# Empty GetRecords answers tolerated before deciding the range is not there any more.
MAX_EMPTY_READS = 5


class QueueKind(StrEnum):
    POISON = "poison"
    ON_FAILURE = "on-failure"


class ReplayError(Exception):
    """A message's records could not be read back or re-driven; the message stays."""


@dataclass
class QueueMessage:
    """One received message and the stream records it stands for, Lambda-shaped."""

    kind: QueueKind
    message_id: str
    receipt_handle: str
    source: str  # "kinesis" | "dynamodb"
    event_source_arn: str
    shard_id: str
    first_sequence_number: str
    error_types: tuple[str, ...]
    body: dict
    records: list[dict] = field(default_factory=list)

    def describe(self) -> str:
        return (
            f"{self.kind} {self.source} {self.shard_id or '-'} seq={self.first_sequence_number} "
            f"error={'/'.join(self.error_types) or '-'}"
        )


# --- Lambda-shaped records ---------------------------------------------------------------


def _region(arn: str) -> str:
    return arn.split(":")[3]


def lambda_kinesis_record(
    arn: str, shard_id: str, partition_key: str, sequence_number: str, data: bytes, arrival_s: float
) -> dict:
    """A record as Lambda delivers it from Kinesis (the documentation's sample event)."""
    return {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": partition_key,
            "sequenceNumber": sequence_number,
            "data": base64.b64encode(data).decode("ascii"),
            "approximateArrivalTimestamp": arrival_s,
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": f"{shard_id}:{sequence_number}",
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": "arn:aws:iam::000000000000:role/streamline-replay",
        "awsRegion": _region(arn),
        "eventSourceARN": arn,
    }


def _event_name(stream_record: dict) -> str:
    if "OldImage" not in stream_record:
        return "INSERT"
    return "REMOVE" if "NewImage" not in stream_record else "MODIFY"


def lambda_dynamodb_record(arn: str, stream_record: dict, event_name: str | None = None) -> dict:
    """A record as Lambda delivers it from a DynamoDB stream. Without an event name (a poison
    message does not carry one) it is read from which images are present."""
    stream_record = dict(stream_record)
    created = stream_record.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):  # boto3 parses it; Lambda sends epoch seconds
        stream_record["ApproximateCreationDateTime"] = int(created.timestamp())
    return {
        "eventID": uuid.uuid4().hex,
        "eventName": event_name or _event_name(stream_record),
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": _region(arn),
        "dynamodb": stream_record,
        "eventSourceARN": arn,
    }


def record_sequence_number(record: dict) -> str:
    if "kinesis" in record:
        return record["kinesis"]["sequenceNumber"]
    return record["dynamodb"]["SequenceNumber"]


def record_keys(record: dict) -> set[str]:
    """The keys a record can be selected by with --key: the Kinesis partition key and the
    demo's `key`; for DynamoDB the item key's values."""
    if "kinesis" in record:
        keys = {record["kinesis"]["partitionKey"]}
        try:
            body = json.loads(base64.b64decode(record["kinesis"]["data"]))
            if isinstance(body, dict) and "key" in body:
                keys.add(str(body["key"]))
        except ValueError:
            pass  # not JSON (or KPL-aggregated): the partition key is all there is
        return keys
    item_key = record["dynamodb"].get("Keys", {})
    return {str(next(iter(value.values()))) for value in item_key.values()}


# --- reading records back from the stream --------------------------------------------------


def _stream_name(arn: str) -> str:
    return arn.split(":stream/", 1)[1]


def read_kinesis_range(client, arn: str, shard_id: str, start: str, end: str) -> list[dict]:
    """The Kinesis records from `start` through `end` (compared as integers)."""
    iterator = client.get_shard_iterator(
        StreamName=_stream_name(arn),
        ShardId=shard_id,
        ShardIteratorType="AT_SEQUENCE_NUMBER",
        StartingSequenceNumber=start,
    )["ShardIterator"]
    return _read_through(
        client,
        iterator,
        end,
        sequence_number=lambda raw: raw["SequenceNumber"],
        to_lambda=lambda raw: lambda_kinesis_record(
            arn,
            shard_id,
            raw["PartitionKey"],
            raw["SequenceNumber"],
            raw["Data"],
            raw["ApproximateArrivalTimestamp"].timestamp(),
        ),
    )


def read_dynamodb_range(client, arn: str, shard_id: str, start: str, end: str) -> list[dict]:
    """The DynamoDB stream records from `start` through `end` (compared as integers)."""
    iterator = client.get_shard_iterator(
        StreamArn=arn,
        ShardId=shard_id,
        ShardIteratorType="AT_SEQUENCE_NUMBER",
        SequenceNumber=start,
    )["ShardIterator"]
    return _read_through(
        client,
        iterator,
        end,
        sequence_number=lambda raw: raw["dynamodb"]["SequenceNumber"],
        to_lambda=lambda raw: lambda_dynamodb_record(arn, raw["dynamodb"], raw["eventName"]),
    )


def _read_through(
    client,
    iterator: str | None,
    end: str,
    sequence_number: Callable[[dict], str],
    to_lambda: Callable[[dict], dict],
) -> list[dict]:
    """GetRecords from `iterator` until the record at `end` (Kinesis and DynamoDB Streams
    share the call's shape); gives up after MAX_EMPTY_READS empty answers."""
    last = int(end)
    records: list[dict] = []
    empty_reads = 0
    while iterator and empty_reads < MAX_EMPTY_READS:
        response = client.get_records(ShardIterator=iterator, Limit=1000)
        iterator = response.get("NextShardIterator")
        if not response["Records"]:
            empty_reads += 1
            continue
        for raw in response["Records"]:
            position = int(sequence_number(raw))
            if position > last:
                return records
            records.append(to_lambda(raw))
            if position == last:
                return records
    return records


def find_dynamodb_shard(client, arn: str, sequence_number: str) -> str:
    """The shard of a DynamoDB stream whose sequence number range holds `sequence_number`."""
    wanted = int(sequence_number)
    kwargs: dict[str, Any] = {"StreamArn": arn}
    while True:
        description = client.describe_stream(**kwargs)["StreamDescription"]
        for shard in description["Shards"]:
            bounds = shard["SequenceNumberRange"]
            ending = bounds.get("EndingSequenceNumber")
            if int(bounds["StartingSequenceNumber"]) <= wanted and (
                ending is None or wanted <= int(ending)
            ):
                return shard["ShardId"]
        last = description.get("LastEvaluatedShardId")
        if not last:
            raise ReplayError(f"no shard of {arn} holds sequence number {sequence_number}")
        kwargs["ExclusiveStartShardId"] = last


@dataclass
class StreamReader:
    """Reads ranges of records back from either kind of stream (clients built lazily)."""

    kinesis_client: Any = None
    dynamodb_streams_client: Any = None

    def read(self, source: str, arn: str, shard_id: str, start: str, end: str) -> list[dict]:
        try:
            if source == "kinesis":
                self.kinesis_client = self.kinesis_client or boto3.client("kinesis")
                records = read_kinesis_range(self.kinesis_client, arn, shard_id, start, end)
            else:
                self.dynamodb_streams_client = self.dynamodb_streams_client or boto3.client(
                    "dynamodbstreams"
                )
                # Lambda's DynamoDB records name no shard, so a poison message may not either.
                shard_id = shard_id or find_dynamodb_shard(self.dynamodb_streams_client, arn, start)
                records = read_dynamodb_range(
                    self.dynamodb_streams_client, arn, shard_id, start, end
                )
        except ClientError as exc:
            raise ReplayError(f"cannot read {shard_id} {start}..{end} of {arn}: {exc}") from exc
        if not records or record_sequence_number(records[0]) != start:
            raise ReplayError(
                f"records {start}..{end} of {shard_id} are no longer in {arn} (past retention?)"
            )
        return records


# --- queue messages -> records ---------------------------------------------------------------


def poison_records(message: PoisonMessage, reader: StreamReader) -> list[dict]:
    arn, shard_id = message["eventSourceARN"], message["shardId"]
    sequence_number = message["sequenceNumber"]
    if message.get("truncated"):
        return reader.read(message["source"], arn, shard_id, sequence_number, sequence_number)
    if message["source"] == "kinesis":
        try:
            data = base64.b64decode(message["data"], validate=True)
        except (KeyError, binascii.Error) as exc:
            raise ReplayError(f"poison message without readable data: {exc}") from exc
        return [
            lambda_kinesis_record(
                arn, shard_id, message["partitionKey"], sequence_number, data, time.time()
            )
        ]
    if "dynamodb" not in message:
        raise ReplayError("poison message from DynamoDB without its `dynamodb` object")
    return [lambda_dynamodb_record(arn, message["dynamodb"])]


def _batch_info(body: OnFailureRecord) -> tuple[str, StreamBatchInfo]:
    if "KinesisBatchInfo" in body:
        return "kinesis", body["KinesisBatchInfo"]
    return "dynamodb", body["DDBStreamBatchInfo"]


def parse_message(kind: QueueKind, raw: dict) -> QueueMessage:
    """The message's coordinates and error types; its records are read later."""
    body = json.loads(raw["Body"])
    if kind is QueueKind.POISON:
        poison: PoisonMessage = body
        return QueueMessage(
            kind,
            raw["MessageId"],
            raw["ReceiptHandle"],
            poison["source"],
            poison["eventSourceARN"],
            poison["shardId"],
            poison["sequenceNumber"],
            (poison["error"]["type"],),
            body,
        )
    on_failure: OnFailureRecord = body
    source, info = _batch_info(on_failure)
    error_types = [on_failure["requestContext"]["condition"]]
    function_error = on_failure.get("responseContext", {}).get("functionError")
    if function_error:
        error_types.append(function_error)
    return QueueMessage(
        kind,
        raw["MessageId"],
        raw["ReceiptHandle"],
        source,
        info["streamArn"],
        info["shardId"],
        info["startSequenceNumber"],
        tuple(error_types),
        body,
    )


def load_records(message: QueueMessage, reader: StreamReader) -> list[dict]:
    if message.kind is QueueKind.POISON:
        return poison_records(message.body, reader)
    _, info = _batch_info(message.body)
    return reader.read(
        message.source,
        info["streamArn"],
        info["shardId"],
        info["startSequenceNumber"],
        info["endSequenceNumber"],
    )


# --- re-driving --------------------------------------------------------------------------------


class ReplayContext:
    """The parts of Lambda's context object a handler commonly uses."""

    def __init__(self, timeout_s: float = DEFAULT_HANDLER_TIMEOUT_S):
        self.function_name = "streamline-replay"
        self.function_version = "$LATEST"
        self.invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:replay"
        self.memory_limit_in_mb = 128
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = "/aws/lambda/streamline-replay"
        self.log_stream_name = "replay"
        self._deadline_s = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline_s - time.monotonic()) * 1000))


def import_handler(spec: str) -> Callable[[dict, Any], Any]:
    """`package.module.function` or `package.module:function`."""
    module_name, _, attribute = spec.replace(":", ".").rpartition(".")
    if not module_name:
        raise ValueError(f"handler {spec!r} is not module.function")
    return getattr(importlib.import_module(module_name), attribute)


class HandlerTarget:
    """Calls a handler with Lambda-shaped events; any failure keeps the message."""

    def __init__(self, handler: Callable[[dict, Any], Any], name: str, batch_size: int):
        self.handler = handler
        self.name = name
        self.batch_size = batch_size

    def describe(self) -> str:
        return f"handler {self.name}"

    def redrive(self, records: Sequence[dict]) -> None:
        for start in range(0, len(records), self.batch_size):
            batch = list(records[start : start + self.batch_size])
            try:
                response = self.handler({"Records": batch, REPLAY_MARKER: True}, ReplayContext())
            except Exception as exc:
                raise ReplayError(f"handler raised {type(exc).__name__}: {exc}") from exc
            # Lambda's success answers: None, "", [], {} or an empty batchItemFailures.
            failures = response.get("batchItemFailures") if isinstance(response, dict) else None
            if failures:
                raise ReplayError(
                    f"handler reported batchItemFailures from {failures[0].get('itemIdentifier')!r}"
                )


class StreamTarget:
    """Puts records back on their source: Kinesis PutRecords, or the DynamoDB item written
    again (which is what puts a record on a table's stream)."""

    def __init__(self, kinesis_client: Any = None, dynamodb_client: Any = None):
        self.kinesis_client = kinesis_client
        self.dynamodb_client = dynamodb_client

    def describe(self) -> str:
        return "its stream"

    def redrive(self, records: Sequence[dict]) -> None:
        kinesis = [r for r in records if "kinesis" in r]
        dynamodb = [r for r in records if "dynamodb" in r]
        try:
            if kinesis:
                self._put_kinesis(kinesis)
            for record in dynamodb:
                self._rewrite_item(record)
        except ClientError as exc:
            raise ReplayError(f"writing back failed: {exc}") from exc

    def _put_kinesis(self, records: Sequence[dict]) -> None:
        self.kinesis_client = self.kinesis_client or boto3.client("kinesis")
        units = []
        for record in records:
            entry = {
                "Data": base64.b64decode(record["kinesis"]["data"]),
                "PartitionKey": record["kinesis"]["partitionKey"],
            }
            key = entry["PartitionKey"]
            units.append(Unit(entry, [], key, len(entry["Data"]) + len(key), frozenset({key})))
        stream_name = _stream_name(records[0]["eventSourceARN"])
        # One entry per key per request, in order: a re-sent failure cannot overtake.
        for batch in plan_batches(units, MAX_RECORDS_PER_PUT, MAX_BYTES_PER_PUT):
            put_records_resending_failures(
                self.kinesis_client, [u.entry for u in batch], stream_name=stream_name
            )

    def _rewrite_item(self, record: dict) -> None:
        self.dynamodb_client = self.dynamodb_client or boto3.client("dynamodb")
        table_name = record["eventSourceARN"].split(":table/", 1)[1].split("/stream/", 1)[0]
        stream_record = record["dynamodb"]
        if record["eventName"] == "REMOVE":
            self.dynamodb_client.delete_item(TableName=table_name, Key=stream_record["Keys"])
        elif "NewImage" in stream_record:
            self.dynamodb_client.put_item(TableName=table_name, Item=stream_record["NewImage"])
        else:
            raise ReplayError("the stream record has no NewImage to write back (KEYS_ONLY?)")


# --- the run ---------------------------------------------------------------------------------


def receive_all(sqs, queue_url: str, visibility_timeout_s: int, limit: int) -> list[dict]:
    messages: dict[str, dict] = {}
    while len(messages) < limit:
        response = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=min(10, limit - len(messages)),
            VisibilityTimeout=visibility_timeout_s,
            WaitTimeSeconds=1,
        )
        batch = response.get("Messages", [])
        if not batch:
            break
        for message in batch:
            messages.setdefault(message["MessageId"], message)
    return list(messages.values())


def stream_order(message: QueueMessage) -> tuple:
    sub = message.body.get("subSequenceNumber", 0) if message.kind is QueueKind.POISON else 0
    return (message.event_source_arn, message.shard_id, int(message.first_sequence_number), sub)


@dataclass
class ReplaySummary:
    replayed: int = 0
    records: int = 0
    skipped: int = 0
    failed: int = 0
    lines: list[str] = field(default_factory=list)


def replay(
    queues: dict[QueueKind, str],
    target: HandlerTarget | StreamTarget,
    *,
    keys: Sequence[str] = (),
    error_types: Sequence[str] = (),
    dry_run: bool = False,
    limit: int = 10_000,
    visibility_timeout_s: int = DEFAULT_VISIBILITY_TIMEOUT_S,
    sqs: Any = None,
    reader: StreamReader | None = None,
    out: Callable[[str], None] = print,
) -> ReplaySummary:
    """Re-drive the messages of `queues` that pass the filters; delete each after success."""
    sqs = sqs or boto3.client("sqs")
    reader = reader or StreamReader()
    summary = ReplaySummary()
    received: list[tuple[str, QueueMessage]] = []
    release: list[tuple[str, str]] = []  # (queue url, receipt handle) to make visible again
    try:
        for kind, queue_url in queues.items():
            for raw in receive_all(sqs, queue_url, visibility_timeout_s, limit):
                try:
                    received.append((queue_url, parse_message(kind, raw)))
                except (ValueError, KeyError, TypeError) as exc:
                    release.append((queue_url, raw["ReceiptHandle"]))
                    summary.failed += 1
                    _say(summary, out, f"{kind} {raw['MessageId']}: unreadable ({exc}); kept")
        received.sort(key=lambda pair: stream_order(pair[1]))
        for queue_url, message in received:
            disposition, line = _replay_one(
                message, target, keys, error_types, dry_run, reader, summary
            )
            if disposition is Disposition.DELETE:
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message.receipt_handle)
            else:
                release.append((queue_url, message.receipt_handle))
            _say(summary, out, f"{message.describe()}: {line}")
    finally:
        for queue_url, handle in release:
            sqs.change_message_visibility(
                QueueUrl=queue_url, ReceiptHandle=handle, VisibilityTimeout=0
            )
    return summary


def _say(summary: ReplaySummary, out: Callable[[str], None], line: str) -> None:
    summary.lines.append(line)
    out(line)


class Disposition(StrEnum):
    DELETE = "delete"  # re-driven in full
    KEEP = "keep"  # filtered out, dry run, partly re-driven or failed: visible again


def _replay_one(
    message: QueueMessage,
    target: HandlerTarget | StreamTarget,
    keys: Sequence[str],
    error_types: Sequence[str],
    dry_run: bool,
    reader: StreamReader,
    summary: ReplaySummary,
) -> tuple[Disposition, str]:
    """Re-drive one message's records; what to do with the message and what happened."""
    if error_types and not set(error_types) & set(message.error_types):
        summary.skipped += 1
        return Disposition.KEEP, "error type filtered out; kept"
    try:
        records = load_records(message, reader)
    except ReplayError as exc:
        summary.failed += 1
        return Disposition.KEEP, f"FAILED to read its records: {exc}; kept"
    selected = [r for r in records if not keys or record_keys(r) & set(keys)]
    if not selected:
        summary.skipped += 1
        return Disposition.KEEP, "key filtered out; kept"
    shown = ",".join(sorted(set().union(*(record_keys(r) for r in selected))))
    what = f"{len(selected)} record(s) [{shown}] to {target.describe()}"
    if dry_run:
        summary.skipped += 1
        return Disposition.KEEP, f"dry run: would re-drive {what}; kept"
    try:
        target.redrive(selected)
    except ReplayError as exc:
        summary.failed += 1
        return Disposition.KEEP, f"FAILED to re-drive {what}: {exc}; kept"
    summary.records += len(selected)
    summary.replayed += 1
    if len(selected) < len(records):
        # Part of an on-failure batch matched --key: the rest must stay replayable.
        return Disposition.KEEP, f"re-drove {what} (part of the batch); kept"
    return Disposition.DELETE, f"re-drove {what}; deleted"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Re-drive records parked on the poison queue and batches reported on the "
        "ESM's on-failure queue, to a handler or back onto their stream. A message is deleted "
        "only after its records were re-driven."
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "--to-handler",
        metavar="MODULE.FUNCTION",
        help="call this handler with Lambda-shaped events (e.g. processor.handler.handler)",
    )
    target.add_argument(
        "--to-stream",
        action="store_true",
        help="put the records back on their Kinesis stream / write the items again",
    )
    parser.add_argument(
        "--from",
        dest="queues",
        choices=["poison", "on-failure", "both"],
        default="both",
        help="which queue(s) to take messages from (default both)",
    )
    parser.add_argument("--key", action="append", default=[], help="only records of this key")
    parser.add_argument(
        "--error-type",
        action="append",
        default=[],
        help="only messages with this error: a poison message's error.type, or an on-failure "
        "record's condition (RetryAttemptsExhausted, RecordAgeExceeded) or functionError",
    )
    parser.add_argument("--dry-run", action="store_true", help="show, re-drive nothing, keep all")
    parser.add_argument("--limit", type=int, default=10_000, help="messages per queue at most")
    parser.add_argument("--batch-size", type=int, default=HANDLER_BATCH_SIZE)
    parser.add_argument(
        "--visibility-timeout",
        type=int,
        default=DEFAULT_VISIBILITY_TIMEOUT_S,
        help="seconds messages stay hidden while this run works on them",
    )
    add_stack_arguments(parser, "poison_queue_url", "on_failure_queue_url")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    stack = resolve_stack(args, "poison_queue_url", "on_failure_queue_url")
    wanted = (
        [QueueKind.POISON, QueueKind.ON_FAILURE]
        if args.queues == "both"
        else [QueueKind(args.queues)]
    )
    url_keys = {QueueKind.POISON: "poison_queue_url", QueueKind.ON_FAILURE: "on_failure_queue_url"}
    queues = {kind: stack[url_keys[kind]] for kind in wanted if stack[url_keys[kind]]}
    if len(queues) != len(wanted):
        print(
            "missing queue URL(s): pass --stack or --poison-queue-url / --on-failure-queue-url",
            file=sys.stderr,
        )
        return 2
    if args.to_handler:
        target: HandlerTarget | StreamTarget = HandlerTarget(
            import_handler(args.to_handler), args.to_handler, args.batch_size
        )
    else:
        target = StreamTarget()
    summary = replay(
        queues,
        target,
        keys=args.key,
        error_types=args.error_type,
        dry_run=args.dry_run,
        limit=args.limit,
        visibility_timeout_s=args.visibility_timeout,
    )
    print(
        f"{'dry run: ' if args.dry_run else ''}re-drove {summary.replayed} message(s) "
        f"({summary.records} records) to {target.describe()}; {summary.skipped} kept by "
        f"filter or dry run; {summary.failed} failed"
    )
    return 1 if summary.failed else 0


if __name__ == "__main__":
    sys.exit(main())
