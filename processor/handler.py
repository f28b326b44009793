"""The demo app's Lambda: applies `{key, n, payload}` events to a sink table, exactly once.

Per key the sink row keeps `last_n`, `count` and a hash chain `h = sha256(h_prev || payload)`
of the events applied in order. The row is the key's keyed state (`SinkFold`): the processor
folds a key's events in memory and commits the state, the key's checkpoint and the sink row
in one transaction per key per batch, keys side by side (MAX_CONCURRENCY, default 16), so a
redelivered record can never be applied twice. (`SinkApplier` is the same logic on the
per-record API: a read and a transaction per record.) An event with `"poison": true` raises,
so it is retried and then parked with its payload. The event's contract is `DemoEventModel`:
an event that breaks it (a missing field, `n` that is not an integer) never reaches the fold;
the processor parks it at once, with the broken fields in the poison message.

The processor dedups by stream position; this handler also keeps its promise per produced
event, which positions cannot see (`sink_action`):

- an event whose `n` is not beyond the key's `last_n` (or was applied by a replay) is a
  *producer duplicate*: the producer wrote it twice (a PutRecords response lost after the
  write, retried), so the stream holds it twice under two sequence numbers. It is skipped,
  counted in the row's `producer_duplicates` (in the same transaction) and logged;
- a replayed event (`Record.replay`: delivered by a replay tool, not the stream) is one the
  processor knows was never applied: parked, or left behind by the ESM. It is applied once,
  poison or not (the poison stands for a bug fixed before the replay), out of the chain's
  order: its `n` joins the row's number set `replayed_n` and `"n:sha256(payload)"` joins
  the string set `replayed`, under a condition that rejects a second replay of that `n`.
  verify.py counts those as applied.

Configuration (environment): CHECKPOINT_TABLE, SINK_TABLE, POISON_QUEUE_URL, MAX_ATTEMPTS
(default 3), MAX_CONCURRENCY (default 16), and Powertools' own POWERTOOLS_SERVICE_NAME,
POWERTOOLS_METRICS_NAMESPACE, POWERTOOLS_LOG_LEVEL.
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from processor.aws import LazyClient
from processor.checkpoint import DynamoDBCheckpointStore
from processor.contracts import DemoEvent
from processor.ordering import OrderedProcessor
from processor.poison import SqsPoisonSink
from processor.records import Record, Source

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "streamline")
logger = Logger(service=SERVICE)
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "streamline"))
tracer = Tracer(service=SERVICE)


class PoisonEventError(Exception):
    """The demo's deliberate poison: an event marked `"poison": true`."""


class ConfigurationError(Exception):
    """A required environment variable is missing or invalid."""


def chain(previous_hex: str, payload: str) -> str:
    """One link of the per-key hash chain (the verifier recomputes the same)."""
    return hashlib.sha256(bytes.fromhex(previous_hex) + payload.encode("utf-8")).hexdigest()


class DemoEventModel(BaseModel):
    """The demo event's contract: Kinesis data `{key, n, payload[, poison]}`, or the source
    table's NewImage `{pk, n, payload[, poison]}`. Strict: `"n": "7"` is not an integer."""

    model_config = ConfigDict(strict=True, frozen=True)

    key: str = Field(min_length=1, validation_alias=AliasChoices("key", "pk"))
    n: int = Field(ge=1)
    payload: str
    poison: bool = False


def demo_event(record: Record) -> DemoEvent | None:
    """The event a record carries; None for a DynamoDB REMOVE (nothing to apply)."""
    model = record.model
    if isinstance(model, DemoEventModel):  # validated by the processor (model=DemoEventModel)
        return DemoEvent(model.key, model.n, model.payload, model.poison)
    if record.source is Source.KINESIS:
        return DemoEvent.from_body(record.json())
    if record.event_name == "REMOVE" or record.new_image is None:
        return None
    return DemoEvent.from_image(record.new_image)


@dataclass(frozen=True)
class SinkRow:
    """A key's sink row as the handler reads it (all zero/empty for a key never seen)."""

    last_n: int = 0
    count: int = 0
    h: str = ""
    replayed_n: frozenset[int] = field(default_factory=frozenset)

    @classmethod
    def from_item(cls, item: dict | None) -> SinkRow:
        if not item:
            return cls()
        return cls(
            last_n=int(item.get("last_n", {}).get("N", "0")),
            count=int(item.get("count", {}).get("N", "0")),
            h=item.get("h", {}).get("S", ""),
            replayed_n=frozenset(int(n) for n in item.get("replayed_n", {}).get("NS", [])),
        )


class SinkAction(Enum):
    APPLY = "apply"  # the key's next event: extends the chain
    PRODUCER_DUPLICATE = "producer duplicate"  # skipped, counted
    REPLAY = "replay"  # applied once, out of the chain's order
    ALREADY_REPLAYED = "already replayed"  # an earlier replay applied it: nothing to do


def sink_action(n: int, replay: bool, row: SinkRow) -> SinkAction:
    """What the sink does with event `n` of a key whose row is `row` (no I/O)."""
    if n in row.replayed_n:
        return SinkAction.ALREADY_REPLAYED if replay else SinkAction.PRODUCER_DUPLICATE
    if replay:
        return SinkAction.REPLAY
    if n <= row.last_n:
        return SinkAction.PRODUCER_DUPLICATE
    return SinkAction.APPLY


def replay_entry(n: int, payload: str) -> str:
    """How the row's `replayed` set names a replayed event and its effect."""
    return f"{n}:{hashlib.sha256(payload.encode('utf-8')).hexdigest()}"


_NOT_REPLAYED = "(attribute_not_exists(replayed_n) OR NOT contains(replayed_n, :n))"


def sink_update(table_name: str, event: DemoEvent, action: SinkAction, row: SinkRow) -> dict:
    """The TransactWriteItems item for `action`; its condition holds only while the row is
    still what `row` says (a concurrent writer makes the transaction fail, and the record is
    retried)."""
    key = {"pk": {"S": event.key}}
    n = {"N": str(event.n)}
    if action is SinkAction.APPLY:
        if row.h:
            chain_unchanged = "#h = :previous_h"
            values = {":previous_h": {"S": row.h}}
        else:
            chain_unchanged = "attribute_not_exists(#h)"
            values = {}
        update = {
            "UpdateExpression": "SET last_n = :n, #count = :count, #h = :h",
            "ConditionExpression": f"{chain_unchanged} AND {_NOT_REPLAYED}",
            "ExpressionAttributeNames": {"#count": "count", "#h": "h"},
            "ExpressionAttributeValues": {
                **values,
                ":n": n,
                ":count": {"N": str(row.count + 1)},
                ":h": {"S": chain(row.h, event.payload)},
            },
        }
    elif action is SinkAction.PRODUCER_DUPLICATE:
        # Both facts only ever become true, so a concurrent writer cannot make this wrong.
        update = {
            "UpdateExpression": "ADD producer_duplicates :one",
            "ConditionExpression": "last_n >= :n OR contains(replayed_n, :n)",
            "ExpressionAttributeValues": {":one": {"N": "1"}, ":n": n},
        }
    elif action is SinkAction.REPLAY:
        update = {
            "UpdateExpression": "ADD replayed_n :ns, replayed :entry",
            "ConditionExpression": _NOT_REPLAYED,
            "ExpressionAttributeValues": {
                ":n": n,
                ":ns": {"NS": [str(event.n)]},
                ":entry": {"SS": [replay_entry(event.n, event.payload)]},
            },
        }
    else:
        raise ValueError(f"{action} writes nothing")
    return {"Update": {"TableName": table_name, "Key": key, **update}}


def log_skip(log: Any, action: SinkAction, event: DemoEvent, row: SinkRow, record: Record):
    """An event the sink skips: a producer duplicate, or one a replay already applied."""
    (log or logger).warning(
        f"{action.value} skipped",
        extra={
            "key": event.key,
            "n": event.n,
            "last_n": row.last_n,
            "sequence_number": record.sequence_number,
            "outcome": action.name.lower(),
        },
    )


@dataclass
class SinkApplier:
    """The record handler: reads the key's sink row, returns the conditional update."""

    table_name: str
    boto3_client: Any = None
    log: Any = None  # a logging.Logger-like object; default: the handler's Powertools Logger
    boto3_session: Any = None

    client = LazyClient("dynamodb")

    def __call__(self, record: Record) -> list[dict] | None:
        event = demo_event(record)
        if event is None:
            return None
        item = self.client.get_item(
            TableName=self.table_name, Key={"pk": {"S": event.key}}, ConsistentRead=True
        ).get("Item")
        row = SinkRow.from_item(item)
        action = sink_action(event.n, record.replay, row)
        if action is SinkAction.APPLY and event.poison:
            raise PoisonEventError(f"event {event.key}#{event.n} is marked as poison")
        if action in (SinkAction.PRODUCER_DUPLICATE, SinkAction.ALREADY_REPLAYED):
            log_skip(self.log, action, event, row, record)
        if action is SinkAction.ALREADY_REPLAYED:
            return None
        return [sink_update(self.table_name, event, action, row)]


@dataclass
class SinkFold:
    """The demo's keyed-state handler: a key's sink row is its state.

    The fold decides with `sink_action`, as `SinkApplier` does, but from the state in memory:
    no read per record. The processor commits the state, the key's checkpoint and the sink row
    (`row_update`, derived from the state) in one transaction per key per batch.
    """

    table_name: str
    log: Any = None

    def __call__(self, record: Record, state: dict | None) -> dict | None:
        event = demo_event(record)
        if event is None:
            return state
        state = state or {"key": event.key, "last_n": 0, "count": 0, "h": ""}
        row = SinkRow(
            last_n=state["last_n"],
            count=state["count"],
            h=state["h"],
            replayed_n=frozenset(state.get("replayed_n", ())),
        )
        action = sink_action(event.n, record.replay, row)
        if action is SinkAction.APPLY and event.poison:
            raise PoisonEventError(f"event {event.key}#{event.n} is marked as poison")
        if action is SinkAction.APPLY:
            return {
                **state,
                "last_n": event.n,
                "count": row.count + 1,
                "h": chain(row.h, event.payload),
            }
        if action is not SinkAction.REPLAY:
            log_skip(self.log, action, event, row, record)
        if action is SinkAction.PRODUCER_DUPLICATE:
            return {**state, "producer_duplicates": state.get("producer_duplicates", 0) + 1}
        if action is SinkAction.REPLAY:
            return {
                **state,
                "replayed_n": sorted({*state.get("replayed_n", ()), event.n}),
                "replayed": sorted(
                    {*state.get("replayed", ()), replay_entry(event.n, event.payload)}
                ),
            }
        return state  # ALREADY_REPLAYED

    def row_update(self, partition_key: str, state: dict | None) -> list[dict]:
        """The sink row as the state says (state_effects): the whole row, set at once."""
        if not state:
            return []
        names = {"#count": "count", "#h": "h"}
        values: dict[str, dict] = {
            ":last_n": {"N": str(state["last_n"])},
            ":count": {"N": str(state["count"])},
            ":h": {"S": state["h"]},
            ":dups": {"N": str(state.get("producer_duplicates", 0))},
        }
        sets = ["last_n = :last_n", "#count = :count", "#h = :h", "producer_duplicates = :dups"]
        if state.get("replayed_n"):
            values[":replayed_n"] = {"NS": [str(n) for n in state["replayed_n"]]}
            values[":replayed"] = {"SS": list(state["replayed"])}
            sets += ["replayed_n = :replayed_n", "replayed = :replayed"]
        update = {
            "TableName": self.table_name,
            "Key": {"pk": {"S": state["key"]}},
            "UpdateExpression": "SET " + ", ".join(sets),
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
        return [{"Update": update}]


def _required(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise ConfigurationError(f"environment variable {name} is required")
    return value


@functools.cache
def build_processor() -> OrderedProcessor:
    """Built once per container from the environment."""
    try:
        max_attempts = int(os.environ.get("MAX_ATTEMPTS", "3"))
    except ValueError as exc:
        raise ConfigurationError(f"MAX_ATTEMPTS must be an integer: {exc}") from exc
    try:
        max_concurrency = int(os.environ.get("MAX_CONCURRENCY", "16"))
    except ValueError as exc:
        raise ConfigurationError(f"MAX_CONCURRENCY must be an integer: {exc}") from exc
    sink = SinkFold(_required("SINK_TABLE"))
    return OrderedProcessor(
        sink,
        checkpoints=DynamoDBCheckpointStore(_required("CHECKPOINT_TABLE")),
        poison=SqsPoisonSink(_required("POISON_QUEUE_URL")),
        max_attempts=max_attempts,
        logger=logger,
        metrics=metrics,
        keyed_state=True,
        max_concurrency=max_concurrency,
        state_effects=sink.row_update,
        model=DemoEventModel,
    )


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict, context: Any) -> dict:
    return build_processor().process(event, context)
