"""Lambda's stream rules as pure functions over lists: no I/O, no clocks, no clients.

The runner's delivery loop (``esm/delivery.py``) calls these and decides what each outcome
means; the conformance tests exercise them directly and through a real endpoint.

- Batch item failures: https://docs.aws.amazon.com/lambda/latest/dg/services-kinesis-batchfailurereporting.html
  and https://docs.aws.amazon.com/lambda/latest/dg/services-ddb-batchfailurereporting.html
- Errors, retries, bisect, record age: https://docs.aws.amazon.com/lambda/latest/dg/services-kinesis-errors.html
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any, TypeVar

T = TypeVar("T")

# Lambda's synchronous invocation payload limit; a batch never exceeds it.
# https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024


class InvalidBatchResponse(ValueError):
    """The function returned, but its batchItemFailures cannot be trusted: Lambda then fails
    the whole batch (the on-failure record says ``functionError: null``)."""

    def __init__(self, reason: str, item: Any = None) -> None:
        super().__init__(f"{reason}: {item!r}" if item is not None else reason)
        self.reason = reason
        self.item = item


def parse_batch_item_failures(response: Any, item_identifiers: Sequence[str]) -> int | None:
    """Where the batch failed, as an index into ``item_identifiers`` (the batch, in order).

    ``None`` means the whole batch succeeded: ``None``, ``""``, ``[]``, ``{}``, a response
    without ``batchItemFailures``, or with it null or empty. Otherwise the lowest reported
    identifier is the checkpoint: every record before it succeeded, Lambda retries from it.
    An item that is not an object, or whose ``itemIdentifier`` is missing, null, empty, not a
    string or not in the batch, raises :class:`InvalidBatchResponse` (whole-batch failure).
    """
    if not isinstance(response, dict):
        return None
    failures = response.get("batchItemFailures")
    if failures is None:
        return None
    if not isinstance(failures, list):
        raise InvalidBatchResponse("batchItemFailures is not a list", failures)
    if not failures:
        return None
    index_of = {identifier: i for i, identifier in enumerate(item_identifiers)}
    lowest: int | None = None
    for item in failures:
        if not isinstance(item, dict) or "itemIdentifier" not in item:
            raise InvalidBatchResponse("item without itemIdentifier", item)
        identifier = item["itemIdentifier"]
        if not isinstance(identifier, str) or not identifier:
            raise InvalidBatchResponse("itemIdentifier is null, empty or not a string", item)
        index = index_of.get(identifier)
        if index is None:
            raise InvalidBatchResponse("itemIdentifier is not in the batch", item)
        lowest = index if lowest is None else min(lowest, index)
    return lowest


def bisect(batch: Sequence[T]) -> tuple[list[T], list[T]]:
    """Split a failed batch in two. AWS documents neither the split point nor the order of
    the halves; we split at the middle (the first half takes the odd record) and the caller
    settles the first half before the second, which keeps per-key order."""
    if len(batch) < 2:
        raise ValueError("a batch of fewer than two records cannot be bisected")
    middle = (len(batch) + 1) // 2
    return list(batch[:middle]), list(batch[middle:])


def count_expired(arrivals_s: Sequence[float], now_s: float, maximum_record_age_s: int) -> int:
    """How many records at the front of the batch are older than the maximum record age.

    Records arrive in order, so the expired ones form a prefix; Lambda sends them to the
    on-failure destination (``RecordAgeExceeded``) and still delivers the fresh ones.
    ``-1`` means the stream's retention: nothing expires here.
    """
    if maximum_record_age_s < 0:
        return 0
    expired = 0
    for arrival_s in arrivals_s:
        if now_s - arrival_s <= maximum_record_age_s:
            break
        expired += 1
    return expired


def retries_exhausted(retries_done: int, maximum_retry_attempts: int) -> bool:
    """True once a failed batch has used up its retries; ``-1`` retries until expiry."""
    return maximum_retry_attempts >= 0 and retries_done >= maximum_retry_attempts


def lane_of(partition_key: str, parallelization_factor: int) -> int:
    """The concurrent batch (lane) a partition key belongs to on its shard. The same key
    always maps to the same lane, so its records stay in order under ParallelizationFactor."""
    if parallelization_factor <= 1:
        return 0
    # crc32, not hash(): Python salts str hashes per process.
    return zlib.crc32(partition_key.encode()) % parallelization_factor


def take_batch(sizes: Sequence[int], batch_size: int, max_payload_bytes: int) -> int:
    """How many records from the front make the next batch: at most ``batch_size``, and no
    more than fit in the invocation payload (but always at least one)."""
    total = 0
    count = 0
    for size in sizes[:batch_size]:
        if count and total + size > max_payload_bytes:
            break
        total += size + 1  # the comma between records
        count += 1
    return count
