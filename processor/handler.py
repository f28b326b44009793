"""The demo app's Lambda: applies `{key, n, payload}` events to a sink table, exactly once.

Per key the sink keeps `last_n`, `count` and a hash chain `h = sha256(h_prev || payload)`.
The update is returned as a DynamoDB transaction item, so it commits together with the
record's checkpoint: a redelivered record can never be applied twice. An event with
`"poison": true` raises, so it is retried and then parked with its payload.

Configuration (environment): CHECKPOINT_TABLE, SINK_TABLE, POISON_QUEUE_URL, MAX_ATTEMPTS
(default 3), and Powertools' own POWERTOOLS_SERVICE_NAME, POWERTOOLS_METRICS_NAMESPACE,
POWERTOOLS_LOG_LEVEL.
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer

from processor.checkpoint import DynamoDBCheckpointStore
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


@dataclass(frozen=True)
class DemoEvent:
    key: str
    n: int
    payload: str
    poison: bool = False


def chain(previous_hex: str, payload: str) -> str:
    """One link of the per-key hash chain (the verifier recomputes the same)."""
    return hashlib.sha256(bytes.fromhex(previous_hex) + payload.encode("utf-8")).hexdigest()


def demo_event(record: Record) -> DemoEvent | None:
    """The event a record carries; None for a DynamoDB REMOVE (nothing to apply)."""
    if record.source is Source.KINESIS:
        body = record.json()
        return DemoEvent(
            str(body["key"]), int(body["n"]), str(body["payload"]), bool(body.get("poison", False))
        )
    if record.event_name == "REMOVE" or record.new_image is None:
        return None
    image = record.new_image
    return DemoEvent(
        str(image["pk"]),
        int(image["n"]),
        str(image.get("payload", "")),
        bool(image.get("poison", False)),
    )


@dataclass
class SinkApplier:
    """The record handler: reads the key's sink row, returns the conditional update."""

    table_name: str
    boto3_client: Any = None

    @property
    def client(self) -> Any:
        if self.boto3_client is None:
            import boto3

            self.boto3_client = boto3.client("dynamodb")
        return self.boto3_client

    def __call__(self, record: Record) -> list[dict] | None:
        event = demo_event(record)
        if event is None:
            return None
        if event.poison:
            raise PoisonEventError(f"event {event.key}#{event.n} is marked as poison")
        current = self.client.get_item(
            TableName=self.table_name, Key={"pk": {"S": event.key}}, ConsistentRead=True
        ).get("Item")
        previous_h = current["h"]["S"] if current else ""
        count = int(current["count"]["N"]) if current else 0
        values = {
            ":n": {"N": str(event.n)},
            ":count": {"N": str(count + 1)},
            ":h": {"S": chain(previous_h, event.payload)},
        }
        if current:
            # Someone else moved the row since we read it: reject, the record is retried.
            condition = "#h = :previous_h"
            values[":previous_h"] = {"S": previous_h}
        else:
            condition = "attribute_not_exists(pk)"
        return [
            {
                "Update": {
                    "TableName": self.table_name,
                    "Key": {"pk": {"S": event.key}},
                    "UpdateExpression": "SET last_n = :n, #count = :count, #h = :h",
                    "ConditionExpression": condition,
                    "ExpressionAttributeNames": {"#count": "count", "#h": "h"},
                    "ExpressionAttributeValues": values,
                }
            }
        ]


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
    return OrderedProcessor(
        SinkApplier(_required("SINK_TABLE")),
        checkpoints=DynamoDBCheckpointStore(_required("CHECKPOINT_TABLE")),
        poison=SqsPoisonSink(_required("POISON_QUEUE_URL")),
        max_attempts=max_attempts,
        logger=logger,
        metrics=metrics,
    )


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict, context: Any) -> dict:
    return build_processor().process(event, context)
