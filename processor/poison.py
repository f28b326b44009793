"""Poison sinks: where a record goes when it cannot be applied, with its full payload.

The message body is `processor.contracts.PoisonMessage`. When it would pass SQS's size limit,
the payload is left out, `truncated` is set, and the stream coordinates remain so the record
can still be read back from the stream while it is retained.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import traceback
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from processor.aws import LazyClient
from processor.contracts import POISON_MESSAGE_VERSION, PoisonMessage
from processor.exceptions import PoisonSinkUnavailable, RecordParseError
from processor.records import BatchItem, Record, Source

# SQS's classic limit for a message (body plus attributes). AWS raised it to 1 MiB in 2025,
# but emulators and older regions still enforce 256 KiB, so that is the default.
# https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/quotas-messages.html
SQS_MAX_MESSAGE_BYTES = 256 * 1024
_ATTRIBUTE_ALLOWANCE_BYTES = 2048  # our three message attributes, generously


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def build_poison_message(
    item: BatchItem,
    error: BaseException,
    *,
    attempts: int,
    first_failure_at: str,
    max_bytes: int = SQS_MAX_MESSAGE_BYTES,
) -> PoisonMessage:
    """The message for a record that is being parked, truncated to fit `max_bytes`."""
    source = item.source or _guess_source(item.raw)
    message: PoisonMessage = {
        "version": POISON_MESSAGE_VERSION,
        "source": str(source),
        "eventSourceARN": item.event_source_arn,
        "shardId": item.shard_id,
        "partitionKey": item.partition_key,
        "sequenceNumber": item.sequence_number or "",
        "subSequenceNumber": item.sub_sequence_number,
        "error": {
            "type": type(error).__name__,
            "message": str(error),
            "traceback": "".join(traceback.format_exception(error)),
        },
        "attempts": attempts,
        "firstFailureAt": first_failure_at,
        "parkedAt": utc_now(),
    }
    if source == Source.KINESIS:
        message["data"] = _kinesis_payload(item)
    else:
        message["dynamodb"] = item.raw.get("dynamodb")
    if len(encode_message(message).encode()) > max_bytes - _ATTRIBUTE_ALLOWANCE_BYTES:
        message.pop("data", None)
        message.pop("dynamodb", None)
        message["truncated"] = True
    return message


def encode_message(message: PoisonMessage) -> str:
    return json.dumps(message, separators=(",", ":"), default=str)


def _kinesis_payload(item: BatchItem) -> str:
    if isinstance(item, Record):
        with contextlib.suppress(RecordParseError):  # data that is not base64: as it arrived
            return base64.b64encode(item.data).decode()
    # Unparseable: keep exactly what arrived, even if it is not valid base64.
    kinesis = item.raw.get("kinesis")
    data = kinesis.get("data") if isinstance(kinesis, dict) else None
    return data if isinstance(data, str) else ""


def _guess_source(raw: dict) -> Source:
    return Source.DYNAMODB if "dynamodb" in raw else Source.KINESIS


class PoisonSink(Protocol):
    def park(self, message: PoisonMessage) -> None:
        """Store the message durably or raise PoisonSinkUnavailable."""


class MemoryPoisonSink:
    """Parked messages kept in `messages`, as the JSON bodies SQS would receive, in order."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self._lock = threading.Lock()

    def park(self, message: PoisonMessage) -> None:
        with self._lock:
            self.messages.append(encode_message(message))


@dataclass
class SqsPoisonSink:
    """Parks messages on an SQS queue, with message attributes to filter and alarm on."""

    queue_url: str
    boto3_client: Any = None
    boto3_session: Any = None
    max_message_bytes: int = SQS_MAX_MESSAGE_BYTES
    sent: int = field(default=0, init=False)

    client = LazyClient("sqs")

    def park(self, message: PoisonMessage) -> None:
        attributes = {
            "source": message["source"],
            "shardId": message["shardId"] or "-",
            "errorType": message["error"]["type"],
        }
        try:
            self.client.send_message(
                QueueUrl=self.queue_url,
                MessageBody=encode_message(message),
                MessageAttributes={
                    name: {"DataType": "String", "StringValue": value[:256]}
                    for name, value in attributes.items()
                },
            )
        except (ClientError, BotoCoreError) as exc:  # refused, timeouts, credentials too
            raise PoisonSinkUnavailable(
                f"could not park {message['partitionKey']!r} at {message['sequenceNumber']} "
                f"on {self.queue_url}: {exc}"
            ) from exc
        self.sent += 1
