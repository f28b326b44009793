"""The wire formats, one definition each.

Written by the handler and the ESM runner, read by the runner, replay and verify:
- the partial batch response Lambda reads (``ReportBatchItemFailures``),
- the poison message this project parks on SQS,
- the on-failure record Lambda sends to an ESM's failure destination,
- the replay report a replay-marked event gets back,
- the demo app's event.

References:
- https://docs.aws.amazon.com/lambda/latest/dg/services-kinesis-batchfailurereporting.html
- https://docs.aws.amazon.com/lambda/latest/dg/kinesis-on-failure-destination.html
- https://docs.aws.amazon.com/lambda/latest/dg/services-ddb-batchfailurereporting.html
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal, NotRequired, TypedDict

# --- partial batch response -------------------------------------------------------------


class BatchItemFailure(TypedDict):
    itemIdentifier: str


class PartialBatchResponse(TypedDict):
    batchItemFailures: list[BatchItemFailure]


_SUCCESS: PartialBatchResponse = {"batchItemFailures": []}


def success_response() -> PartialBatchResponse:
    """A fresh copy of the all-succeeded response (never share the mutable default)."""
    return copy.deepcopy(_SUCCESS)


def failure_response(item_identifier: str) -> PartialBatchResponse:
    return {"batchItemFailures": [{"itemIdentifier": item_identifier}]}


# --- replay --------------------------------------------------------------------------------

REPLAY_MARKER = "streamlineReplay"
"""A top-level event key, set to true by replay tools. OrderedProcessor then applies parked
records, and records the ESM gave up on while they were unsettled, once more (exactly once
with transaction items), leaves checkpoints and attempt counters alone, and never parks
again: a failing replayed record is reported instead. The response then carries a
`ReplayReport` under the same key."""

REPLAY_SUB_SEQUENCE_NUMBER = "streamlineSubSequenceNumber"
"""Set by replay tools inside a Kinesis record's `kinesis` object when the record stands for
one KPL user record (its `data` is that user record's bytes, not an aggregate): the user
record's sub-sequence number, so it keeps its position (sequence number, sub-sequence
number) instead of taking (sequence number, 0)."""


def replay_record_id(sequence_number: str, sub_sequence_number: int = 0) -> str:
    """How a `ReplayReport` names one user record: "SEQ", or "SEQ:SUB" for a KPL sub-record."""
    if sub_sequence_number:
        return f"{sequence_number}:{sub_sequence_number}"
    return sequence_number


class ReplayReport(TypedDict):
    """What a replay did with each record of the event, by `replay_record_id`.

    A message may be deleted when every one of its records is in `applied`,
    `alreadyReplayed` or (see below) `appliedInOrder`; never on anything else.
    """

    applied: list[str]  # applied by this replay
    alreadyReplayed: list[str]  # applied by an earlier replay: known applied
    # Behind the key's checkpoint and not among the records the processor saw left unapplied
    # (parked, failed, blocked behind a failure, cut by the time budget). That means applied
    # in order, but only if the processor ran to its end on the batch that held the record:
    # after a function crash or timeout it may never have seen it. Trust it for an on-failure
    # batch whose functionError is null; otherwise the record's fate is unknown.
    appliedInOrder: list[str]
    # Behind the checkpoint, but the key saw more unapplied records than the store keeps
    # track of (a hot key blocked behind a failure): applied or not, nobody can tell.
    unknown: list[str]
    failed: list[str]  # failed again; batchItemFailures names the first
    blocked: list[str]  # not tried: behind a failed record of the same key in this event
    unparseable: list[str]  # cannot be parsed, so cannot be applied, and was never parked
    parked: list[str]  # cannot be parsed; parked when it first arrived (replay it from there)
    unprocessed: list[str]  # not tried: the invocation's time budget ran out


class ReplayResponse(PartialBatchResponse):
    streamlineReplay: ReplayReport


# --- poison message (our SQS body) -----------------------------------------------------

POISON_MESSAGE_VERSION = "1"


class PoisonError(TypedDict):
    type: str
    message: str
    traceback: str


class PoisonMessage(TypedDict):
    version: str
    source: Literal["kinesis", "dynamodb"]
    eventSourceARN: str
    shardId: str
    partitionKey: str
    sequenceNumber: str
    subSequenceNumber: int
    data: NotRequired[str]  # Kinesis: base64 of the user record's bytes
    dynamodb: NotRequired[dict]  # DynamoDB: the record's `dynamodb` object as received
    truncated: NotRequired[bool]  # payload left out to fit SQS's size limit
    error: PoisonError
    attempts: int
    firstFailureAt: str
    parkedAt: str


# --- on-failure record (what Lambda's ESM sends to the failure destination) ------------

OnFailureCondition = Literal["RetryAttemptsExhausted", "RecordAgeExceeded"]


class OnFailureRequestContext(TypedDict):
    requestId: str
    functionArn: str
    condition: OnFailureCondition
    approximateInvokeCount: int


class OnFailureResponseContext(TypedDict):
    statusCode: int
    executedVersion: str
    functionError: str | None  # "Unhandled" after a thrown error; None after a response


class StreamBatchInfo(TypedDict):
    shardId: str
    startSequenceNumber: str
    endSequenceNumber: str
    approximateArrivalOfFirstRecord: str
    approximateArrivalOfLastRecord: str
    batchSize: int
    streamArn: str


class OnFailureRecord(TypedDict):
    requestContext: OnFailureRequestContext
    responseContext: NotRequired[OnFailureResponseContext]  # absent for RecordAgeExceeded
    version: str  # "1.0"
    timestamp: str
    KinesisBatchInfo: NotRequired[StreamBatchInfo]
    DDBStreamBatchInfo: NotRequired[StreamBatchInfo]


# --- the demo app's event ------------------------------------------------------------------


class PoisonKind(StrEnum):
    """How a deliberately failing demo event fails (load's --poison-kind)."""

    HANDLER = "handler"  # marked `"poison": true`: the handler raises; parked after max_attempts
    # Breaks the demo event's contract (`n` sent as a string): the handler's model refuses it
    # and the processor parks it at once, as InvalidPayloadError with attempts 1.
    CONTRACT = "contract"


CONTRACT_VIOLATION_ERROR = "InvalidPayloadError"
"""The poison message's `error.type` for a payload that breaks the processor's model/schema
(`processor.exceptions.InvalidPayloadError`)."""


@dataclass(frozen=True)
class DemoEvent:
    """The demo app's event: n = 1, 2, 3... per key; `poison` marks a deliberate failure.

    On Kinesis it is the record's JSON data `{"key", "n", "payload"[, "poison": true]}`; on the
    DynamoDB source table it is the item `{pk, n, payload[, poison]}`. Written by load, applied
    by the demo handler, read back from poison messages by verify and replay.
    `breaks_contract` sends `n` as a string (`"n": "7"`, an `S` attribute on the table): a
    wrong type the demo handler's model (processor.handler.DemoEventModel) refuses.
    """

    key: str
    n: int
    payload: str
    poison: bool = False
    breaks_contract: bool = False

    def body(self) -> dict[str, Any]:
        """The Kinesis record's data, as JSON fields."""
        n: int | str = str(self.n) if self.breaks_contract else self.n
        body: dict[str, Any] = {"key": self.key, "n": n, "payload": self.payload}
        if self.poison:
            body["poison"] = True
        return body

    def data(self) -> bytes:
        return json.dumps(self.body(), separators=(",", ":")).encode("utf-8")

    def item(self) -> dict[str, dict]:
        """The source table's item, in DynamoDB's wire form."""
        item: dict[str, dict] = {
            "pk": {"S": self.key},
            "n": {"S" if self.breaks_contract else "N": str(self.n)},
            "payload": {"S": self.payload},
        }
        if self.poison:
            item["poison"] = {"BOOL": True}
        return item

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> DemoEvent:
        """From a Kinesis record's parsed data; KeyError, ValueError or TypeError if it is
        not a demo event."""
        return cls(
            str(body["key"]),
            int(body["n"]),
            str(body["payload"]),
            bool(body.get("poison", False)),
            breaks_contract=isinstance(body["n"], str),
        )

    @classmethod
    def from_image(cls, image: dict[str, Any]) -> DemoEvent:
        """From a source table item in plain values (a deserialised NewImage)."""
        return cls(
            str(image["pk"]),
            int(image["n"]),
            str(image.get("payload", "")),
            bool(image.get("poison", False)),
            breaks_contract=isinstance(image["n"], str),
        )
