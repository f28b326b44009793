"""SQS as the tools use it: one receive, visibility changes ten at a time, the count of
messages someone holds.

The two walks over a queue differ on purpose and stay with their tools: verify reads the
poison queue without consuming it (`verify.peek_queue`: messages are received hidden and made
visible again as soon as the walk ends), while replay holds what it receives until each
message is re-driven or let go (`replay.receive_all` with a `replay.VisibilityKeeper`, which
keeps extending their visibility). What they share is here.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

# Messages per ReceiveMessage, and entries per ChangeMessageVisibilityBatch: SQS's limit.
MAX_BATCH = 10
# Long polling asks every SQS host, not a sample, so a message is not missed for a round:
# https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-short-and-long-polling.html
LONG_POLL_S = 1


def receive(
    sqs, queue_url: str, visibility_timeout_s: int, max_messages: int = MAX_BATCH, **extra: Any
) -> list[dict]:
    """One ReceiveMessage with long polling: the messages, hidden for `visibility_timeout_s`."""
    response = sqs.receive_message(
        QueueUrl=queue_url,
        MaxNumberOfMessages=max_messages,
        VisibilityTimeout=visibility_timeout_s,
        WaitTimeSeconds=LONG_POLL_S,
        **extra,
    )
    return response.get("Messages", [])


def visibility_batches(receipt_handles: Sequence[str], timeout_s: int) -> Iterator[list[dict]]:
    """The ChangeMessageVisibilityBatch entries that set `timeout_s` on every handle, one list
    per request (0: visible again at once)."""
    for start in range(0, len(receipt_handles), MAX_BATCH):
        yield [
            {"Id": str(i), "ReceiptHandle": handle, "VisibilityTimeout": timeout_s}
            for i, handle in enumerate(receipt_handles[start : start + MAX_BATCH])
        ]


def in_flight(sqs, queue_url: str) -> int:
    """Messages of the queue someone holds hidden right now (approximate, as SQS counts)."""
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0))
