"""Re-drive parked records: from the poison queue and from the ESM's on-failure queue.

- A poison message (`PoisonMessage`) carries the record itself (Kinesis `data`, DynamoDB
  `dynamodb`); when it was truncated to fit SQS, the record is read back from the stream
  by its coordinates. A KPL user record (`subSequenceNumber` >= 1, or one read back out of
  its aggregate) keeps its position: the replayed record carries
  `REPLAY_SUB_SEQUENCE_NUMBER` and the user record's own bytes.
- An on-failure message (`OnFailureRecord`, Lambda's own) holds only stream coordinates: the
  batch is read back from the shard, from startSequenceNumber through endSequenceNumber
  (GetShardIterator AT_SEQUENCE_NUMBER), while the stream still retains it. Under
  ParallelizationFactor > 1 that range also holds other lanes' records: the batch is the
  records of the first record's lane (`esm.rules.lane_of`), checked against `batchSize`; a
  batch that cannot be identified exactly is refused.
  https://docs.aws.amazon.com/lambda/latest/dg/kinesis-on-failure-destination.html

Each message's records then go either to a handler (`--to-handler module.function`, called
with a Lambda-shaped event and context) or back onto their source (`--to-stream`).

What decides a message's fate (the rules are the pure functions below; the rest is I/O):
- `--to-handler`: events carry `REPLAY_MARKER`; a handler built on OrderedProcessor answers
  with a `ReplayReport`. The message is deleted only when every one of its records is
  `applied` or `alreadyReplayed`, or `appliedInOrder` and the message is an on-failure record
  whose functionError is null (the processor ran to the end of that batch). Otherwise it is
  kept. A handler that answers without a report cannot confirm anything: its messages are
  kept unless `--trust-handler` (then a success response is taken at its word).
- `--to-stream`, Kinesis: PutRecords of the user records (new sequence numbers). Refused for
  part of a message (`--key` selecting some of its records): a later full replay would put
  the first part twice, so a message goes back whole or not at all.
- `--to-stream`, DynamoDB: the item is written again only if it is still what the record
  left it as (see `check_item`), with a conditional UpdateItem that adds
  `REPLAYED_AT_ATTRIBUTE` (DynamoDB writes no stream record for a write that changes
  nothing); anything newer, a REMOVE, or a KEYS_ONLY record is refused, naming the item.
- Messages are re-driven in stream order; once a message of a key is not re-driven (failed,
  refused, held), later messages of that key are held, so the key's order is kept.

Messages stay hidden only `--visibility-timeout` seconds (extended while this run holds
them) and are made visible again at once when this run ends, however it ends (SIGINT,
SIGTERM included). Exit codes: see `ExitCode`.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import importlib
import json
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from enum import IntEnum, StrEnum
from typing import Any

import boto3
from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import BotoCoreError, ClientError

from esm.rules import lane_of
from esm.settings import FunctionSettings
from esm.sources import DynamoDBStreamSource, KinesisSource, source_for
from processor.aws import error_code, parse_arn, unqualified_function_arn
from processor.contracts import (
    REPLAY_MARKER,
    REPLAY_SUB_SEQUENCE_NUMBER,
    OnFailureRecord,
    PoisonMessage,
    StreamBatchInfo,
    replay_record_id,
)
from processor.events import (
    LambdaContext,
    dynamodb_event_record,
    kinesis_event_record,
    wire_image,
)
from processor.records import Record, Unparseable, parse_record
from streamline.arguments import OneLineParser, integer, non_empty, text
from streamline.tools.load import (
    MAX_BYTES_PER_PUT,
    MAX_RECORDS_PER_PUT,
    ResendExhausted,
    Unit,
    plan_batches,
    put_records_resending_failures,
)
from streamline.tools.queues import MAX_BATCH, in_flight, receive, visibility_batches
from streamline.tools.stack import (
    AWS_ERRORS,
    StackFileError,
    add_stack_arguments,
    describe_aws_error,
    resolve_stack,
)

# Messages stay hidden this long while this run holds them, extended every third of it.
DEFAULT_VISIBILITY_TIMEOUT_S = 30
MAX_VISIBILITY_TIMEOUT_S = 12 * 60 * 60  # SQS's limit
DEFAULT_HANDLER_TIMEOUT_S = 300
HANDLER_BATCH_SIZE = 100
# Empty GetRecords answers tolerated before deciding the range is not there any more.
MAX_EMPTY_READS = 5
GET_RECORDS_LIMIT = 1000
# Added to a DynamoDB item re-driven --to-stream, so the write changes the item and DynamoDB
# puts a record on the table's stream (it writes none for a write that changes nothing).
REPLAYED_AT_ATTRIBUTE = "streamlineReplayedAt"


class ExitCode(IntEnum):
    """The first that applies, in this order: interrupted, failed, refused, unconfirmed, in
    flight, ok."""

    OK = 0  # every selected message re-driven and deleted (or a dry run, or nothing to do)
    FAILED = 1  # records failed again or could not be read or written; kept (or held)
    UNUSABLE = 2  # bad arguments, stack file, queue, endpoint, credentials or handler
    UNCONFIRMED = 3  # re-driven, but not known applied (or no report): kept
    REFUSED = 4  # re-driving would duplicate or roll back, or the batch is not identifiable
    IN_FLIGHT = 5  # messages were invisible (another reader, or a killed run): not replayed
    INTERRUPTED = 130  # SIGINT (Ctrl-C); held messages made visible again
    TERMINATED = 143  # SIGTERM; likewise


class QueueKind(StrEnum):
    POISON = "poison"
    ON_FAILURE = "on-failure"


class Outcome(StrEnum):
    """What became of one message."""

    DELETED = "deleted"  # every record known applied (or put back on its stream)
    FILTERED = "filtered"  # --key / --error-type left it out: kept
    DRY_RUN = "dry run"  # kept
    FAILED = "failed"  # kept: records failed again, could not be read or written
    UNCONFIRMED = "unconfirmed"  # kept: re-driven, but not known applied
    REFUSED = "refused"  # kept: re-driving it would duplicate or roll back
    HELD = "held"  # kept: an earlier message of one of its keys was not re-driven


_EXIT_FOR_OUTCOME = {
    Outcome.FAILED: ExitCode.FAILED,
    Outcome.HELD: ExitCode.FAILED,
    Outcome.REFUSED: ExitCode.REFUSED,
    Outcome.UNCONFIRMED: ExitCode.UNCONFIRMED,
}
_EXIT_ORDER = (ExitCode.FAILED, ExitCode.REFUSED, ExitCode.UNCONFIRMED)


class ReplayError(Exception):
    """A message's records could not be read back or re-driven; the message stays."""


class Refused(ReplayError):
    """Re-driving the message would duplicate records or destroy newer data."""


class Unusable(Exception):
    """This run cannot start: one line says why (exit 2)."""


class Terminated(BaseException):
    """SIGTERM, raised in the main thread like KeyboardInterrupt for SIGINT."""


@dataclass
class QueueMessage:
    """One received message and the stream records it stands for, Lambda-shaped."""

    kind: QueueKind
    queue_url: str
    message_id: str
    receipt_handle: str
    source: str  # "kinesis" | "dynamodb"
    event_source_arn: str
    shard_id: str
    first_sequence_number: str
    error_types: tuple[str, ...]
    body: dict

    def describe(self) -> str:
        sub = self.body.get("subSequenceNumber") if self.kind is QueueKind.POISON else None
        position = f"{self.first_sequence_number}:{sub}" if sub else self.first_sequence_number
        return (
            f"{self.kind} {self.source} {self.shard_id or '-'} seq={position} "
            f"error={'/'.join(self.error_types) or '-'}"
        )


# --- Lambda-shaped records ---------------------------------------------------------------

# Who replay says it is, in the records it builds (invokeIdentityArn) and in the context a
# handler gets; the stream sources (esm.sources) need a function only for the role.
REPLAY_ROLE_ARN = "arn:aws:iam::000000000000:role/streamline-replay"
REPLAY_FUNCTION = FunctionSettings(
    name="streamline-replay",
    arn="arn:aws:lambda:us-east-1:000000000000:function:replay",
    handler="",
    timeout_s=DEFAULT_HANDLER_TIMEOUT_S,
    role_arn=REPLAY_ROLE_ARN,
)


def replay_context() -> LambdaContext:
    """The context a handler gets with each replayed event."""
    return LambdaContext.with_timeout(
        REPLAY_FUNCTION.timeout_s,
        function_name=REPLAY_FUNCTION.name,
        invoked_function_arn=REPLAY_FUNCTION.arn,
        memory_limit_in_mb=REPLAY_FUNCTION.memory_mb,
        log_group_name="/aws/lambda/streamline-replay",
        log_stream_name="replay",
    )


def _kinesis_record(
    arn: str,
    shard_id: str,
    partition_key: str,
    sequence_number: str,
    data: bytes,
    arrival_s: float,
    sub_sequence_number: int | None = None,
) -> dict:
    """A Kinesis record as Lambda delivers it. With `sub_sequence_number`, it stands for that
    one KPL user record (`data` is its bytes) and keeps its position."""
    record = kinesis_event_record(
        event_source_arn=arn,
        shard_id=shard_id,
        partition_key=partition_key,
        sequence_number=sequence_number,
        data=data,
        arrival_s=arrival_s,
        invoke_identity_arn=REPLAY_ROLE_ARN,
    )
    if sub_sequence_number is not None:
        record["kinesis"][REPLAY_SUB_SEQUENCE_NUMBER] = sub_sequence_number
    return record


def _event_name(stream_record: dict) -> str:
    if "OldImage" not in stream_record:
        return "INSERT"
    return "REMOVE" if "NewImage" not in stream_record else "MODIFY"


def boto3_value(value: dict) -> dict:
    """The inverse of `processor.events.wire_attribute_value`: B and BS members as bytes,
    which boto3 sends as binary."""
    ((tag, inner),) = value.items()
    if tag == "B" and isinstance(inner, str):
        return {"B": base64.b64decode(inner, validate=True)}
    if tag == "BS":
        return {
            "BS": [base64.b64decode(v, validate=True) if isinstance(v, str) else v for v in inner]
        }
    if tag == "M":
        return {"M": {k: boto3_value(v) for k, v in inner.items()}}
    if tag == "L":
        return {"L": [boto3_value(v) for v in inner]}
    return value


def _dynamodb_record(arn: str, stream_record: dict) -> dict:
    """A poison message's DynamoDB record as Lambda delivers it (images in wire form). The
    message carries no event name: it is read from the images present."""
    stream_record = dict(stream_record)
    for image in ("Keys", "NewImage", "OldImage"):
        if isinstance(stream_record.get(image), dict):
            stream_record[image] = wire_image(stream_record[image])
    return dynamodb_event_record(
        event_source_arn=arn, stream_record=stream_record, event_name=_event_name(stream_record)
    )


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


def user_records(record: dict) -> list[Record | Unparseable]:
    """The user records the processor will see in `record` (several for a KPL aggregate)."""
    return parse_record(record)


def record_ids(records: Iterable[dict]) -> list[str | None]:
    """Every user record's `replay_record_id`, as a ReplayReport names it; None for one
    without a readable sequence number (it can never be confirmed)."""
    return [
        replay_record_id(item.sequence_number, item.sub_sequence_number)
        if item.sequence_number
        else None
        for record in records
        for item in user_records(record)
    ]


def ordering_keys(records: Iterable[dict]) -> set[tuple[str, str]]:
    """(event source ARN, partition key) of every user record: the processor's order keys."""
    return {
        (item.event_source_arn, item.partition_key)
        for record in records
        for item in user_records(record)
    }


def lane_key(record: dict) -> str:
    """The partition key the ESM hashes to a lane (esm/sources.py builds the same string):
    Kinesis's partition key; for DynamoDB the wire-form item key as sorted, compact JSON."""
    if "kinesis" in record:
        return record["kinesis"]["partitionKey"]
    keys = record["dynamodb"].get("Keys", {})
    return json.dumps(keys, sort_keys=True, separators=(",", ":"))


# --- rules: which records are the batch, what may be deleted --------------------------------


@dataclass(frozen=True)
class BatchSelection:
    records: list[dict]
    exact: bool
    reason: str = ""  # why not exact


def select_batch(
    records: Sequence[dict], info: StreamBatchInfo, parallelization_factor: int | None
) -> BatchSelection:
    """The records of an on-failure batch, out of the range start..end read back from its shard.

    Under ParallelizationFactor > 1 the range also holds the records other lanes were
    delivering meanwhile. A batch is a run of one lane's records, so it is the range's records
    in the lane of its first record; it is exact when that gives `batchSize` records ending
    at `endSequenceNumber`. Without a factor, only a range of exactly `batchSize` records is
    known to be the batch.
    """
    size = info["batchSize"]
    end = info["endSequenceNumber"]
    if len(records) == size and records and record_sequence_number(records[-1]) == end:
        return BatchSelection(list(records), True)
    held = f"the range holds {len(records)} records for a batch of {size}"
    if len(records) < size or not records:
        return BatchSelection(list(records), False, f"{held}: the stream no longer has them all")
    if parallelization_factor is None:
        return BatchSelection(
            list(records),
            False,
            f"{held} (other lanes' records, ParallelizationFactor > 1) and the mapping's "
            "parallelization factor is unknown: pass --parallelization-factor",
        )
    if parallelization_factor <= 1:
        return BatchSelection(
            list(records), False, f"{held}, but the mapping's parallelization factor is 1"
        )
    lane = lane_of(lane_key(records[0]), parallelization_factor)
    chosen = [r for r in records if lane_of(lane_key(r), parallelization_factor) == lane]
    if len(chosen) == size and record_sequence_number(chosen[-1]) == end:
        return BatchSelection(chosen, True)
    return BatchSelection(
        list(records),
        False,
        f"{held}; lane {lane} of {parallelization_factor} holds {len(chosen)} of them (the "
        "mapping does not hash keys to lanes as the local ESM does, or the factor is wrong)",
    )


class Verdict(StrEnum):
    APPLIED = "applied"  # every record known applied: the message may go
    NOT_APPLIED = "not applied"  # some record failed, was blocked, not tried, unparseable
    UNKNOWN = "unknown"  # some record may or may not have been applied
    NO_REPORT = "no report"  # the handler says nothing per record


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    detail: str = ""


KNOWN_APPLIED = frozenset({"applied", "alreadyReplayed"})
NOT_APPLIED = frozenset({"failed", "blocked", "unparseable", "unprocessed", "notSent"})
PARKED = "parked"  # unparseable, and on the poison queue already
APPLIED_IN_ORDER = "appliedInOrder"


def trusts_applied_in_order(message: QueueMessage) -> bool:
    """`appliedInOrder` means applied only when the processor ran to the end of the batch that
    held the record: an on-failure record of a function that returned (functionError null)."""
    if message.kind is not QueueKind.ON_FAILURE:
        return False
    response_context = message.body.get("responseContext")
    return isinstance(response_context, dict) and response_context.get("functionError") is None


def untrusted_reason(message: QueueMessage) -> str:
    """Why `appliedInOrder` says nothing for this message."""
    if message.kind is QueueKind.POISON:
        return (
            "the processor holds no parked entry for it and its key has moved past it: applied, "
            "or parked and lost before this replay; it cannot tell"
        )
    response_context = message.body.get("responseContext")
    if not isinstance(response_context, dict):
        return "they expired (RecordAgeExceeded) before the function saw them"
    return (
        f"after a function error ({response_context.get('functionError')}) the processor may "
        "never have reached them"
    )


def judge(
    expected_ids: Sequence[str | None],
    report: Mapping[str, Sequence[str]] | None,
    *,
    trust_applied_in_order: bool,
    parked_is_accounted: bool,
    success_response: bool = False,
    trust_handler: bool = False,
) -> Judgement:
    """May a message whose records are `expected_ids` be deleted, given the merged report?"""
    if report is None:
        if not trust_handler:
            return Judgement(Verdict.NO_REPORT)
        if success_response:
            return Judgement(Verdict.APPLIED, "success response (--trust-handler)")
        return Judgement(Verdict.NOT_APPLIED, "the handler reported batchItemFailures")
    where: dict[str, str] = {}
    for name, ids in report.items():
        for record_id in ids:
            # A record named twice counts as its worst: not applied over anything else.
            if record_id not in where or name in NOT_APPLIED:
                where[record_id] = name
    not_applied: Counter[str] = Counter()
    unknown: Counter[str] = Counter()
    for record_id in expected_ids:
        name = where.get(record_id) if record_id is not None else None
        if name in KNOWN_APPLIED:
            continue
        if name == APPLIED_IN_ORDER:
            if not trust_applied_in_order:
                unknown[APPLIED_IN_ORDER] += 1
        elif name == PARKED:
            if not parked_is_accounted:
                not_applied[PARKED] += 1
        elif name in NOT_APPLIED:
            not_applied[name] += 1
        else:
            unknown[name or "unreported"] += 1
    if not_applied:
        return Judgement(Verdict.NOT_APPLIED, _counts(not_applied))
    if unknown:
        return Judgement(Verdict.UNKNOWN, _counts(unknown))
    return Judgement(Verdict.APPLIED)


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{count} {name}" for name, count in sorted(counter.items()))


def exit_code(outcomes: Counter[Outcome], in_flight: int, interrupted: ExitCode | None) -> ExitCode:
    if interrupted is not None:
        return interrupted
    codes = {_EXIT_FOR_OUTCOME[o] for o, n in outcomes.items() if n and o in _EXIT_FOR_OUTCOME}
    for code in _EXIT_ORDER:
        if code in codes:
            return code
    return ExitCode.IN_FLIGHT if in_flight else ExitCode.OK


# --- rules: writing a DynamoDB item back ------------------------------------------------------

_deserializer = TypeDeserializer()


def _plain(image: Mapping[str, dict]) -> dict[str, Any]:
    """An item (boto3 form) as comparable Python values (numbers as Decimal, sets as sets)."""
    return {name: _deserializer.deserialize(value) for name, value in image.items()}


def _describe_item(keys: Mapping[str, dict]) -> str:
    return json.dumps(
        {name: _plain({name: boto3_value(v)})[name] for name, v in keys.items()},
        sort_keys=True,
        default=lambda v: str(v) if isinstance(v, Decimal) else repr(v),
    )


def check_item(record: dict, current: Mapping[str, dict] | None) -> str | None:
    """Why `record` may not be written back onto its table, given the item's current state
    (boto3 form, None when absent); None when it may.

    The rule: an item is written back only if it is still exactly what the record left it
    as, its NewImage. Anything else means a later write exists, whose stream record carries
    the newer state: writing the record's image again would roll the item back. A REMOVE is
    never written back: the item is gone (deleting nothing writes no stream record) or was
    written again since (deleting it would destroy that write).
    """
    stream_record = record["dynamodb"]
    keys = _describe_item(stream_record.get("Keys", {}))
    item = f"item {keys} of {parse_arn(record['eventSourceARN']).resource_name}"
    if record.get("eventName") == "REMOVE":
        return (
            f"{item}: a REMOVE cannot be put back on the stream (deleting an absent item writes "
            "no stream record; deleting a re-created one destroys newer data); use --to-handler"
        )
    image = stream_record.get("NewImage")
    if not isinstance(image, dict):
        return f"{item}: the stream record has no NewImage to write back (KEYS_ONLY?)"
    if current is None:
        return f"{item} was deleted after this record: writing it back would undo the delete"
    if _plain(current) != _plain({k: boto3_value(v) for k, v in image.items()}):
        return (
            f"{item} changed after this record: writing its image back would roll it back "
            "(a newer record of it is on the stream already)"
        )
    return None


def rewrite_request(record: dict, replayed_at: str) -> dict:
    """UpdateItem arguments that mark the item re-driven, only while it equals the record's
    NewImage. An UpdateItem never drops an attribute, so even a concurrent writer's attribute
    the condition does not name survives; the new attribute makes the write a change, so
    DynamoDB puts a MODIFY record on the table's stream."""
    stream_record = record["dynamodb"]
    image = {k: boto3_value(v) for k, v in stream_record["NewImage"].items()}
    names: dict[str, str] = {}
    values: dict[str, dict] = {}
    conditions = []
    for index, (name, value) in enumerate(sorted(image.items())):
        names[f"#a{index}"] = name
        values[f":a{index}"] = value
        conditions.append(f"#a{index} = :a{index}")
    names["#replayed"] = REPLAYED_AT_ATTRIBUTE
    values[":replayed"] = {"S": replayed_at}
    for index, name in enumerate(sorted(set(stream_record.get("OldImage", {})) - set(image))):
        names[f"#o{index}"] = name
        conditions.append(f"attribute_not_exists(#o{index})")
    return {
        "TableName": parse_arn(record["eventSourceARN"]).resource_name,
        "Key": {k: boto3_value(v) for k, v in stream_record["Keys"].items()},
        "UpdateExpression": "SET #replayed = :replayed",
        "ConditionExpression": " AND ".join(conditions),
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": values,
    }


# --- reading records back from the stream --------------------------------------------------


def read_range(
    source: KinesisSource | DynamoDBStreamSource, shard_id: str, start: str, end: str
) -> list[dict]:
    """The records of one shard from `start` through `end` (compared as integers), as Lambda
    delivers them; gives up after MAX_EMPTY_READS empty answers."""
    last = int(end)
    iterator = source.shard_iterator(shard_id, "AT_SEQUENCE_NUMBER", sequence_number=start)
    records: list[dict] = []
    empty_reads = 0
    while iterator and empty_reads < MAX_EMPTY_READS:
        result = source.read(shard_id, iterator, GET_RECORDS_LIMIT)
        iterator = result.next_iterator
        if not result.records:
            empty_reads += 1
            continue
        for record in result.records:
            position = int(record.sequence_number)
            if position > last:
                return records
            records.append(json.loads(record.event_json))
            if position == last:
                return records
    return records


def find_dynamodb_shard(client, arn: str, sequence_number: str) -> str:
    """The shard of a DynamoDB stream whose sequence number range holds `sequence_number`
    (`DynamoDBStreamSource.list_shards` keeps no ranges, so DescribeStream is read here)."""
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
    """Reads ranges of records back from either kind of stream, through esm's sources: one
    per stream, its client built on first use from `session` (default: a new boto3 one)."""

    session: Any = None
    _sources: dict[str, KinesisSource | DynamoDBStreamSource] = field(default_factory=dict)

    def read(self, arn: str, shard_id: str, start: str, end: str) -> list[dict]:
        try:
            source = self._source(arn)
            if isinstance(source, DynamoDBStreamSource) and not shard_id:
                # Lambda's DynamoDB records name no shard, so a poison message may not either.
                shard_id = find_dynamodb_shard(source.client, arn, start)
            records = read_range(source, shard_id, start, end)
        except ClientError as exc:
            raise ReplayError(f"cannot read {shard_id} {start}..{end} of {arn}: {exc}") from exc
        if not records or record_sequence_number(records[0]) != start:
            raise ReplayError(
                f"records {start}..{end} of {shard_id} are no longer in {arn} (past retention?)"
            )
        return records

    def _source(self, arn: str) -> KinesisSource | DynamoDBStreamSource:
        if arn not in self._sources:
            self.session = self.session or boto3.Session()
            try:
                self._sources[arn] = source_for(arn, REPLAY_FUNCTION, self.session)
            except ValueError as exc:
                raise ReplayError(str(exc)) from exc
        return self._sources[arn]


@dataclass
class MappingLookup:
    """The ParallelizationFactor of the mapping behind an on-failure record, from the Lambda
    API (ListEventSourceMappings by stream, filtered by function ARN); None when unknown."""

    client: Any = None
    _cache: dict[tuple[str, str], int | None] = field(default_factory=dict)

    def factor(self, function_arn: str, stream_arn: str) -> int | None:
        key = (function_arn, stream_arn)
        if key not in self._cache:
            self._cache[key] = self._look_up(function_arn, stream_arn)
        return self._cache[key]

    def _look_up(self, function_arn: str, stream_arn: str) -> int | None:
        function = _unqualified(function_arn)
        if function is None:
            return None  # no function to look the mapping up by
        try:
            self.client = self.client or boto3.client("lambda")
            paginator = self.client.get_paginator("list_event_source_mappings")
            for page in paginator.paginate(EventSourceArn=stream_arn):
                for mapping in page.get("EventSourceMappings", []):
                    if _unqualified(mapping.get("FunctionArn", "")) == function:
                        return int(mapping.get("ParallelizationFactor") or 1)
        except (ClientError, BotoCoreError):
            return None  # no access to Lambda, or not there: the batch must show itself exact
        return None


def _unqualified(function_arn: str) -> str | None:
    """The function ARN without version or alias; None for anything that is not an ARN."""
    try:
        return unqualified_function_arn(function_arn)
    except ValueError:
        return None


# --- queue messages -> records ---------------------------------------------------------------


def _user_record_of(aggregate: dict, sub_sequence_number: int) -> dict:
    """The one user record `sub_sequence_number` of a record read back from the stream, as a
    record of its own that keeps its position."""
    items = user_records(aggregate)
    if len(items) == 1 and sub_sequence_number == 0 and type(items[0]) is Record:
        return aggregate  # a plain record
    matches = [i for i in items if i.sub_sequence_number == sub_sequence_number]
    if not matches or type(matches[0]) is not Record:
        raise ReplayError(
            f"record {record_sequence_number(aggregate)} read back holds no readable user "
            f"record {sub_sequence_number}"
        )
    item = matches[0]
    return _kinesis_record(
        item.event_source_arn,
        item.shard_id,
        item.partition_key,
        item.sequence_number,
        item.data,
        aggregate["kinesis"]["approximateArrivalTimestamp"],
        sub_sequence_number=sub_sequence_number,
    )


def poison_records(message: PoisonMessage, reader: StreamReader) -> list[dict]:
    arn, shard_id = message["eventSourceARN"], message["shardId"]
    sequence_number = message["sequenceNumber"]
    sub = message.get("subSequenceNumber") or 0
    if message.get("truncated"):
        records = reader.read(arn, shard_id, sequence_number, sequence_number)
        if message["source"] == "kinesis":
            return [_user_record_of(records[0], sub)]
        return records[:1]
    if message["source"] == "kinesis":
        try:
            data = base64.b64decode(message["data"], validate=True)
        except (KeyError, binascii.Error) as exc:
            raise ReplayError(f"poison message without readable data: {exc}") from exc
        return [
            _kinesis_record(
                arn,
                shard_id,
                message["partitionKey"],
                sequence_number,
                data,
                time.time(),
                # A KPL user record keeps its position (sequence number, sub-sequence number).
                sub_sequence_number=sub or None,
            )
        ]
    if "dynamodb" not in message:
        raise ReplayError("poison message from DynamoDB without its `dynamodb` object")
    return [_dynamodb_record(arn, message["dynamodb"])]


def _batch_info(body: OnFailureRecord) -> tuple[str, StreamBatchInfo]:
    if "KinesisBatchInfo" in body:
        return "kinesis", body["KinesisBatchInfo"]
    return "dynamodb", body["DDBStreamBatchInfo"]


def parse_message(kind: QueueKind, queue_url: str, raw: dict) -> QueueMessage:
    """The message's coordinates and error types; its records are read later."""
    body = json.loads(raw["Body"])
    if kind is QueueKind.POISON:
        poison: PoisonMessage = body
        return QueueMessage(
            kind,
            queue_url,
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
        queue_url,
        raw["MessageId"],
        raw["ReceiptHandle"],
        source,
        info["streamArn"],
        info["shardId"],
        info["startSequenceNumber"],
        tuple(error_types),
        body,
    )


def load_records(
    message: QueueMessage, reader: StreamReader, factor_for: Callable[[QueueMessage], int | None]
) -> list[dict]:
    """The message's records; for an on-failure batch exactly its records, or Refused."""
    if message.kind is QueueKind.POISON:
        return poison_records(message.body, reader)
    _, info = _batch_info(message.body)
    records = reader.read(
        info["streamArn"],
        info["shardId"],
        info["startSequenceNumber"],
        info["endSequenceNumber"],
    )
    selection = select_batch(records, info, None)
    if not selection.exact:
        selection = select_batch(records, info, factor_for(message))
    if not selection.exact:
        # Both targets: other lanes' records re-driven would be put twice on the stream, or
        # applied by the handler ahead of their own key's earlier records.
        raise Refused(f"cannot tell the batch's records apart: {selection.reason}")
    return selection.records


# --- re-driving --------------------------------------------------------------------------------


def handler_output():
    """While the handler is imported or runs, its stdout (Powertools' metrics JSON, prints,
    a Logger created at import) goes to stderr: replay's stdout is replay's lines only."""
    return contextlib.redirect_stdout(sys.stderr)


def import_handler(spec: str) -> Callable[[dict, Any], Any]:
    """`package.module.function` or `package.module:function`; Unusable when it is not one."""
    module_name, _, attribute = spec.replace(":", ".").rpartition(".")
    if not module_name or not attribute:
        raise Unusable(f"--to-handler {spec!r} is not module.function")
    try:
        with handler_output():
            module = importlib.import_module(module_name)
    except ImportError as exc:
        raise Unusable(f"--to-handler {spec}: cannot import {module_name}: {exc}") from exc
    except Exception as exc:  # the user's module failed at import: say how, in one line
        raise Unusable(
            f"--to-handler {spec}: importing {module_name} raised {type(exc).__name__}: {exc}"
        ) from exc
    handler = getattr(module, attribute, None)
    if not callable(handler):
        raise Unusable(f"--to-handler {spec}: {module_name} has no function {attribute!r}")
    return handler


@dataclass
class HandlerResult:
    """The handler's answers to one message's events, merged."""

    report: dict[str, list[str]] | None  # None when some answer carried no ReplayReport
    success: bool  # no answer named batchItemFailures


def _report_of(response: Any) -> dict[str, list[str]] | None:
    report = response.get(REPLAY_MARKER) if isinstance(response, dict) else None
    if not isinstance(report, dict):
        return None
    if not all(isinstance(v, list) and all(isinstance(i, str) for i in v) for v in report.values()):
        return None
    return report


class HandlerTarget:
    """Calls a handler with Lambda-shaped, replay-marked events."""

    def __init__(self, handler: Callable[[dict, Any], Any], name: str, batch_size: int):
        self.handler = handler
        self.name = name
        self.batch_size = batch_size

    def describe(self) -> str:
        return f"handler {self.name}"

    def redrive(self, records: Sequence[dict]) -> HandlerResult:
        """One event per `batch_size` records, in order. After an event with a record not
        applied, the rest are not sent (that would apply a key's later records before it)."""
        merged: dict[str, list[str]] = {}
        reported = True
        success = True
        for start in range(0, len(records), self.batch_size):
            batch = list(records[start : start + self.batch_size])
            try:
                with handler_output():
                    response = self.handler(
                        {"Records": batch, REPLAY_MARKER: True}, replay_context()
                    )
            except Exception as exc:  # the user's code: any failure keeps the message
                raise ReplayError(f"handler raised {type(exc).__name__}: {exc}") from exc
            # Lambda's success answers: None, "", [], {} or an empty batchItemFailures.
            failures = response.get("batchItemFailures") if isinstance(response, dict) else None
            success = success and not failures
            report = _report_of(response)
            if report is None:
                reported = False
            else:
                for name, ids in report.items():
                    merged.setdefault(name, []).extend(ids)
            stop = failures or (report is not None and any(report.get(n) for n in NOT_APPLIED))
            if stop:
                rest = [i for i in record_ids(records[start + self.batch_size :]) if i]
                merged.setdefault("notSent", []).extend(rest)
                break
        return HandlerResult(merged if reported else None, success)


class StreamTarget:
    """Puts records back on their source: Kinesis PutRecords, or the DynamoDB item marked
    re-driven (a conditional UpdateItem), which puts a record on the table's stream."""

    def __init__(self, kinesis_client: Any = None, dynamodb_client: Any = None):
        self.kinesis_client = kinesis_client
        self.dynamodb_client = dynamodb_client

    def describe(self) -> str:
        return "its stream"

    def redrive(self, records: Sequence[dict]) -> None:
        kinesis = [r for r in records if "kinesis" in r]
        dynamodb = [r for r in records if "dynamodb" in r]
        if kinesis:
            self._put_kinesis(kinesis)
        if dynamodb:
            self._rewrite_items(dynamodb)

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
        stream_name = parse_arn(records[0]["eventSourceARN"]).resource_name
        put = 0
        # One entry per key per request, in order: a re-sent failure cannot overtake.
        for batch in plan_batches(units, MAX_RECORDS_PER_PUT, MAX_BYTES_PER_PUT):
            try:
                put_records_resending_failures(
                    self.kinesis_client, [u.entry for u in batch], stream_name=stream_name
                )
            except (ClientError, ResendExhausted) as exc:
                already = f"; {put} of {len(records)} were put before it" if put else ""
                raise ReplayError(f"PutRecords failed: {exc}{already}") from exc
            put += len(batch)

    def _rewrite_items(self, records: Sequence[dict]) -> None:
        self.dynamodb_client = self.dynamodb_client or boto3.client("dynamodb")
        try:
            # Every record is checked before any is written: a message goes back whole or not.
            for record in records:
                current = self._current_item(record)
                reason = check_item(record, current)
                if reason:
                    raise Refused(reason)
            replayed_at = datetime.now(UTC).isoformat(timespec="microseconds")
            for record in records:
                try:
                    self.dynamodb_client.update_item(**rewrite_request(record, replayed_at))
                except ClientError as exc:
                    if error_code(exc) != "ConditionalCheckFailedException":
                        raise
                    raise Refused(
                        f"{check_item(record, self._current_item(record)) or 'the item'} "
                        "(changed while re-driving)"
                    ) from exc
        except ClientError as exc:
            raise ReplayError(f"writing back failed: {exc}") from exc

    def _current_item(self, record: dict) -> dict | None:
        if record.get("eventName") == "REMOVE" or "NewImage" not in record["dynamodb"]:
            return None  # refused whatever the item holds
        response = self.dynamodb_client.get_item(
            TableName=parse_arn(record["eventSourceARN"]).resource_name,
            Key={k: boto3_value(v) for k, v in record["dynamodb"]["Keys"].items()},
            ConsistentRead=True,
        )
        return response.get("Item")


# --- holding messages while working on them ----------------------------------------------------


class VisibilityKeeper:
    """Keeps received messages hidden while this run holds them (extending their visibility
    every third of the timeout) and makes them visible again at once when it lets them go."""

    def __init__(self, sqs: Any, timeout_s: int):
        self.sqs = sqs
        self.timeout_s = timeout_s
        self._held: dict[str, str] = {}  # receipt handle -> queue url
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._extend_loop, name="visibility", daemon=True)
        self.errors: list[str] = []

    def __enter__(self) -> VisibilityKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.release_all()

    def hold(self, queue_url: str, receipt_handle: str) -> None:
        with self._lock:
            self._held[receipt_handle] = queue_url

    def delete(self, queue_url: str, receipt_handle: str) -> None:
        self.sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=receipt_handle)
        with self._lock:
            self._held.pop(receipt_handle, None)

    def release(self, queue_url: str, receipt_handle: str) -> None:
        with self._lock:
            self._held.pop(receipt_handle, None)
        self._change(queue_url, [receipt_handle], 0)

    def release_all(self) -> int:
        with self._lock:
            held, self._held = self._held, {}
        self._change_all(held, 0)
        return len(held)

    def _extend_loop(self) -> None:
        interval = max(self.timeout_s / 3, 0.2)
        while not self._stop.wait(interval):
            with self._lock:
                held = dict(self._held)
            self._change_all(held, self.timeout_s)

    def _change_all(self, held: Mapping[str, str], timeout_s: int) -> None:
        """Set `timeout_s` on every held message (receipt handle -> queue url), by queue."""
        by_queue: dict[str, list[str]] = {}
        for handle, queue_url in held.items():
            by_queue.setdefault(queue_url, []).append(handle)
        for queue_url, handles in by_queue.items():
            self._change(queue_url, handles, timeout_s)

    def _change(self, queue_url: str, handles: list[str], timeout_s: int) -> None:
        # One failed request is recorded and the others still go: this runs on the way out,
        # where every message that can be made visible again should be.
        for entries in visibility_batches(handles, timeout_s):
            try:
                response = self.sqs.change_message_visibility_batch(
                    QueueUrl=queue_url, Entries=entries
                )
            except (ClientError, BotoCoreError) as exc:
                self.errors.append(f"ChangeMessageVisibility on {queue_url}: {exc}")
                continue
            for failed in response.get("Failed", []):
                self.errors.append(f"ChangeMessageVisibility on {queue_url}: {failed}")


# --- the run ---------------------------------------------------------------------------------


def receive_all(sqs, queue_url: str, keeper: VisibilityKeeper, limit: int) -> list[dict]:
    """Up to `limit` messages of the queue, each held by `keeper` as soon as it arrives."""
    messages: dict[str, dict] = {}
    while len(messages) < limit:
        batch = receive(sqs, queue_url, keeper.timeout_s, min(MAX_BATCH, limit - len(messages)))
        if not batch:
            break
        for message in batch:
            keeper.hold(queue_url, message["ReceiptHandle"])
            messages[message["MessageId"]] = message  # the latest receipt handle wins
    return list(messages.values())


def stream_order(message: QueueMessage) -> tuple:
    sub = message.body.get("subSequenceNumber", 0) if message.kind is QueueKind.POISON else 0
    return (message.event_source_arn, message.shard_id, int(message.first_sequence_number), sub)


@dataclass
class ReplaySummary:
    outcomes: Counter[Outcome] = field(default_factory=Counter)
    records: int = 0  # records re-driven
    in_flight: dict[str, int] = field(default_factory=dict)  # queue url -> hidden messages
    interrupted: ExitCode | None = None
    lines: list[str] = field(default_factory=list)

    @property
    def deleted(self) -> int:
        return self.outcomes[Outcome.DELETED]

    @property
    def exit_code(self) -> ExitCode:
        return exit_code(self.outcomes, sum(self.in_flight.values()), self.interrupted)


@dataclass
class Options:
    keys: Sequence[str] = ()
    error_types: Sequence[str] = ()
    dry_run: bool = False
    trust_handler: bool = False
    parallelization_factor: int | None = None  # overrides the Lambda API lookup


def replay(
    queues: dict[QueueKind, str],
    target: HandlerTarget | StreamTarget,
    *,
    keys: Sequence[str] = (),
    error_types: Sequence[str] = (),
    dry_run: bool = False,
    trust_handler: bool = False,
    parallelization_factor: int | None = None,
    limit: int = 10_000,
    visibility_timeout_s: int = DEFAULT_VISIBILITY_TIMEOUT_S,
    sqs: Any = None,
    reader: StreamReader | None = None,
    mappings: MappingLookup | None = None,
    out: Callable[[str], None] = print,
) -> ReplaySummary:
    """Re-drive the messages of `queues` that pass the filters; delete each known applied.
    Every message this run holds is visible again when it returns or raises."""
    sqs = sqs or boto3.client("sqs")
    reader = reader or StreamReader()
    mappings = mappings or MappingLookup()
    options = Options(keys, error_types, dry_run, trust_handler, parallelization_factor)
    summary = ReplaySummary()

    def say(line: str) -> None:
        summary.lines.append(line)
        out(line)

    def factor_for(message: QueueMessage) -> int | None:
        if options.parallelization_factor is not None:
            return options.parallelization_factor
        function_arn = message.body.get("requestContext", {}).get("functionArn", "")
        return mappings.factor(function_arn, message.event_source_arn)

    with VisibilityKeeper(sqs, visibility_timeout_s) as keeper:
        try:
            for queue_url in queues.values():
                hidden = in_flight(sqs, queue_url)
                if hidden:
                    summary.in_flight[queue_url] = hidden
            received: list[QueueMessage] = []
            for kind, queue_url in queues.items():
                for raw in receive_all(sqs, queue_url, keeper, limit):
                    try:
                        received.append(parse_message(kind, queue_url, raw))
                    except (ValueError, KeyError, TypeError) as exc:
                        keeper.release(queue_url, raw["ReceiptHandle"])
                        summary.outcomes[Outcome.FAILED] += 1
                        say(f"{kind} {raw['MessageId']}: unreadable ({exc}); kept")
            received.sort(key=stream_order)
            held_keys: set[tuple[str, str]] = set()
            for message in received:
                outcome, redriven, line = _replay_one(
                    message, target, options, reader, factor_for, held_keys
                )
                summary.records += redriven
                if outcome is Outcome.DELETED:
                    try:
                        keeper.delete(message.queue_url, message.receipt_handle)
                    except ClientError as exc:
                        outcome = Outcome.FAILED
                        line = f"{line}, but the delete failed ({exc}): a re-run confirms it"
                else:
                    keeper.release(message.queue_url, message.receipt_handle)
                summary.outcomes[outcome] += 1
                say(f"{message.describe()}: {line}")
        except KeyboardInterrupt:
            summary.interrupted = ExitCode.INTERRUPTED
        except Terminated:
            summary.interrupted = ExitCode.TERMINATED
    for queue_url, hidden in summary.in_flight.items():
        say(
            f"{hidden} message(s) of {queue_url} were in flight (held by another reader, or by "
            "a replay that was killed; they reappear within their visibility timeout) and were "
            "not replayed: run again later"
        )
    for error in keeper.errors:
        say(f"warning: {error}")
    return summary


def _not_redriven(records: Sequence[dict], held_keys: set[tuple[str, str]]) -> None:
    held_keys.update(ordering_keys(records))


def _replay_one(
    message: QueueMessage,
    target: HandlerTarget | StreamTarget,
    options: Options,
    reader: StreamReader,
    factor_for: Callable[[QueueMessage], int | None],
    held_keys: set[tuple[str, str]],
) -> tuple[Outcome, int, str]:
    """Re-drive one message's records: what became of the message, how many records were
    re-driven, and what happened."""
    if options.error_types and not set(options.error_types) & set(message.error_types):
        return Outcome.FILTERED, 0, "error type filtered out; kept"
    try:
        records = load_records(message, reader, factor_for)
    except Refused as exc:
        return Outcome.REFUSED, 0, f"REFUSED: {exc}; kept"
    except ReplayError as exc:
        return Outcome.FAILED, 0, f"FAILED to read its records: {exc}; kept"
    selected = [r for r in records if not options.keys or record_keys(r) & set(options.keys)]
    if not selected:
        return Outcome.FILTERED, 0, "key filtered out; kept"
    shown = ",".join(sorted(set().union(*(record_keys(r) for r in selected))))
    what = f"{len(selected)} record(s) [{shown}] to {target.describe()}"
    if options.dry_run:
        return Outcome.DRY_RUN, 0, f"dry run: would re-drive {what}; kept"
    blocking = ordering_keys(selected) & held_keys
    if blocking:
        _not_redriven(selected, held_keys)
        key = sorted(k for _, k in blocking)[0]
        return (
            Outcome.HELD,
            0,
            (
                f"HELD: an earlier message of key {key} was not re-driven in this run; re-driving "
                "this one first would break the key's order; kept"
            ),
        )
    if isinstance(target, StreamTarget):
        outcome, line = _to_stream(target, records, selected, what, held_keys)
    else:
        outcome, line = _to_handler(message, target, options, records, selected, what, held_keys)
    redriven = 0 if outcome is Outcome.REFUSED else len(selected)
    return outcome, redriven, line


def _to_stream(
    target: StreamTarget,
    records: Sequence[dict],
    selected: Sequence[dict],
    what: str,
    held_keys: set[tuple[str, str]],
) -> tuple[Outcome, str]:
    if len(selected) < len(records):
        _not_redriven(selected, held_keys)
        return Outcome.REFUSED, (
            f"REFUSED: --key selects {len(selected)} of its {len(records)} records; records put "
            "back on a stream get new sequence numbers, so a later full replay would put these "
            "twice: re-drive the whole message (no --key) or use --to-handler; kept"
        )
    try:
        target.redrive(selected)
    except Refused as exc:
        _not_redriven(selected, held_keys)
        return Outcome.REFUSED, f"REFUSED: {exc}; kept"
    except ReplayError as exc:
        _not_redriven(selected, held_keys)
        return Outcome.FAILED, f"FAILED to re-drive {what}: {exc}; kept"
    return Outcome.DELETED, f"re-drove {what}; deleted"


def _to_handler(
    message: QueueMessage,
    target: HandlerTarget,
    options: Options,
    records: Sequence[dict],
    selected: Sequence[dict],
    what: str,
    held_keys: set[tuple[str, str]],
) -> tuple[Outcome, str]:
    try:
        result = target.redrive(selected)
    except ReplayError as exc:
        _not_redriven(selected, held_keys)
        return Outcome.FAILED, f"FAILED to re-drive {what}: {exc}; kept"
    judgement = judge(
        record_ids(selected),
        result.report,
        trust_applied_in_order=trusts_applied_in_order(message),
        parked_is_accounted=message.kind is QueueKind.ON_FAILURE,
        success_response=result.success,
        trust_handler=options.trust_handler,
    )
    if judgement.verdict is Verdict.NOT_APPLIED:
        _not_redriven(selected, held_keys)
        return Outcome.FAILED, f"FAILED: re-drove {what}, not applied ({judgement.detail}); kept"
    if judgement.verdict is Verdict.NO_REPORT:
        return Outcome.UNCONFIRMED, (
            f"UNCONFIRMED: re-drove {what}, but its answer has no {REPLAY_MARKER} report (not "
            "an OrderedProcessor?), so nothing confirms they were applied; kept (--trust-handler "
            "deletes on a success response)"
        )
    if judgement.verdict is Verdict.UNKNOWN:
        why = untrusted_reason(message) if APPLIED_IN_ORDER in judgement.detail else ""
        return Outcome.UNCONFIRMED, (
            f"UNCONFIRMED: re-drove {what}; not known applied ({judgement.detail}"
            f"{': ' + why if why else ''}); kept: check the sink, then delete the message by "
            "hand or re-drive it --to-stream"
        )
    if len(selected) < len(records):
        # Part of an on-failure batch matched --key: the rest must stay replayable.
        return Outcome.FILTERED, f"re-drove {what}, applied (part of the batch); kept"
    detail = f" ({judgement.detail})" if judgement.detail else ""
    return Outcome.DELETED, f"re-drove {what}, applied{detail}; deleted"


# --- command line ----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="replay.py",
        description="Re-drive records parked on the poison queue and batches reported on the "
        "ESM's on-failure queue, to a handler or back onto their stream. A message is deleted "
        "only when its records are known applied (or put back on their stream).",
        epilog="exit codes: 0 all re-driven and deleted; 1 failed (kept); 2 unusable input; "
        "3 unconfirmed (kept); 4 refused (kept); 5 messages in flight; 130 SIGINT; 143 SIGTERM",
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "--to-handler",
        type=text,
        metavar="MODULE.FUNCTION",
        help="call this handler with Lambda-shaped events (e.g. processor.handler.handler)",
    )
    target.add_argument(
        "--to-stream",
        action="store_true",
        help="put the records back on their Kinesis stream / mark the items re-driven",
    )
    parser.add_argument(
        "--from",
        dest="queues",
        choices=["poison", "on-failure", "both"],
        default="both",
        help="which queue(s) to take messages from (default both)",
    )
    parser.add_argument(
        "--key", type=non_empty, action="append", default=[], help="only records of this key"
    )
    parser.add_argument(
        "--error-type",
        type=text,
        action="append",
        default=[],
        help="only messages with this error: a poison message's error.type, or an on-failure "
        "record's condition (RetryAttemptsExhausted, RecordAgeExceeded) or functionError",
    )
    parser.add_argument("--dry-run", action="store_true", help="show, re-drive nothing, keep all")
    parser.add_argument(
        "--trust-handler",
        action="store_true",
        help="delete on a success response from a handler that sends no ReplayReport (one not "
        "built on OrderedProcessor); without it such messages are kept",
    )
    parser.add_argument(
        "--parallelization-factor",
        type=integer(1, 10),
        default=None,
        help="the mapping's ParallelizationFactor, to tell an on-failure batch's records from "
        "other lanes' (default: read from the Lambda API)",
    )
    parser.add_argument(
        "--limit", type=integer(1), default=10_000, help="messages per queue at most"
    )
    parser.add_argument(
        "--batch-size",
        type=integer(1),
        default=HANDLER_BATCH_SIZE,
        help=f"records per handler event (default {HANDLER_BATCH_SIZE})",
    )
    parser.add_argument(
        "--visibility-timeout",
        type=integer(1, MAX_VISIBILITY_TIMEOUT_S),
        default=DEFAULT_VISIBILITY_TIMEOUT_S,
        help="seconds a held message stays hidden if this run dies (extended while it runs; "
        f"default {DEFAULT_VISIBILITY_TIMEOUT_S})",
    )
    add_stack_arguments(parser, "poison_queue_url", "on_failure_queue_url")
    return parser


def _stack(args: argparse.Namespace) -> dict[str, str | None]:
    try:
        return resolve_stack(args, "poison_queue_url", "on_failure_queue_url")
    except StackFileError as exc:
        raise Unusable(str(exc)) from exc


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return _main(args)
    except Unusable as exc:
        print(f"replay.py: {exc}", file=sys.stderr)
        return ExitCode.UNUSABLE
    except AWS_ERRORS as exc:
        print(f"replay.py: {describe_aws_error(exc)}", file=sys.stderr)
        return ExitCode.UNUSABLE
    except KeyboardInterrupt:
        print("replay.py: interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except Terminated:
        print("replay.py: terminated", file=sys.stderr)
        return ExitCode.TERMINATED
    finally:
        signal.signal(signal.SIGTERM, previous)


def _main(args: argparse.Namespace) -> int:
    stack = _stack(args)
    wanted = (
        [QueueKind.POISON, QueueKind.ON_FAILURE]
        if args.queues == "both"
        else [QueueKind(args.queues)]
    )
    url_keys = {QueueKind.POISON: "poison_queue_url", QueueKind.ON_FAILURE: "on_failure_queue_url"}
    queues = {kind: stack[url_keys[kind]] for kind in wanted if stack[url_keys[kind]]}
    if len(queues) != len(wanted):
        raise Unusable(
            "missing queue URL(s): pass --stack or --poison-queue-url / --on-failure-queue-url"
        )
    if args.to_handler:
        target: HandlerTarget | StreamTarget = HandlerTarget(
            import_handler(args.to_handler), args.to_handler, args.batch_size
        )
    else:
        target = StreamTarget()
    sqs = boto3.client("sqs")
    for kind, queue_url in queues.items():
        try:
            in_flight(sqs, queue_url)  # the queue is there and reachable, or one line
        except AWS_ERRORS as exc:
            raise Unusable(describe_aws_error(exc, f"{kind} queue {queue_url}")) from exc
    summary = replay(
        queues,
        target,
        keys=args.key,
        error_types=args.error_type,
        dry_run=args.dry_run,
        trust_handler=args.trust_handler,
        parallelization_factor=args.parallelization_factor,
        limit=args.limit,
        visibility_timeout_s=args.visibility_timeout,
        sqs=sqs,
    )
    counts = ", ".join(f"{n} {o}" for o, n in summary.outcomes.items() if n) or "no messages"
    held_elsewhere = sum(summary.in_flight.values())
    print(
        f"{'dry run: ' if args.dry_run else ''}re-drove {summary.records} record(s) to "
        f"{target.describe()}: {counts}"
        + (f"; {held_elsewhere} in flight" if held_elsewhere else "")
        + ("; interrupted, every held message visible again" if summary.interrupted else "")
    )
    return summary.exit_code


if __name__ == "__main__":
    sys.exit(main())
