"""Push the demo app's events onto the Kinesis stream and the DynamoDB source table.

Each event is `{"key", "n", "payload"}` (+ `"poison": true`), n = 1, 2, 3... per key. Kinesis
gets it as the record's data with the key as partition key (optionally KPL-aggregated);
the DynamoDB source table gets a PutItem of `{pk, n, payload}` on the key's item, so its
stream carries an INSERT then MODIFYs in order. A manifest JSON lists every event sent (with
its payload and, for Kinesis, its shard and sequence number) for verify.py.

Per key, events go out strictly in order: a batch never holds two entries that share a key,
and the next batch of a key's lane goes out only once the previous one was fully accepted.
PutRecords and BatchWriteItem give no order among the entries of one request that fail and
are re-sent, so this is the only way re-sends cannot reorder a key:
https://docs.aws.amazon.com/kinesis/latest/APIReference/API_PutRecords.html
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import string
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError

from scripts.progress import Progress
from scripts.stack import add_stack_arguments, resolve_stack

MAX_RECORDS_PER_PUT = 500
MAX_BYTES_PER_PUT = 5 * 1024 * 1024
MAX_ITEMS_PER_BATCH_WRITE = 25
MAX_BYTES_PER_BATCH_WRITE = 16 * 1024 * 1024
# How far past a blocked entry the batch planner looks for entries of other keys.
PLAN_LOOKAHEAD = 4 * MAX_RECORDS_PER_PUT
DEFAULT_MAX_ATTEMPTS = 20
MANIFEST_VERSION = 1

# Per-entry PutRecords errors worth re-sending; anything else (KMS access, say) is fatal.
RETRYABLE_ENTRY_ERRORS = frozenset({"ProvisionedThroughputExceededException", "InternalFailure"})
# Whole-request errors that mean "slow down" rather than "you are wrong".
THROTTLING_ERRORS = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "LimitExceededException",
        "RequestLimitExceeded",
        "InternalServerError",
        "InternalFailure",
        "ServiceUnavailable",
    }
)


class Source(StrEnum):
    KINESIS = "kinesis"
    DYNAMODB = "dynamodb"


KEY_PREFIX = {Source.KINESIS: "k-", Source.DYNAMODB: "d-"}


@dataclass(frozen=True)
class Event:
    """One demo event; `index` is its place in the manifest."""

    index: int
    source: Source
    key: str
    n: int
    payload: str
    poison: bool = False

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"key": self.key, "n": self.n, "payload": self.payload}
        if self.poison:
            body["poison"] = True
        return body

    def data(self) -> bytes:
        return json.dumps(self.body(), separators=(",", ":")).encode("utf-8")

    def item(self) -> dict[str, dict]:
        item: dict[str, dict] = {
            "pk": {"S": self.key},
            "n": {"N": str(self.n)},
            "payload": {"S": self.payload},
        }
        if self.poison:
            item["poison"] = {"BOOL": True}
        return item


def payload_sha256(payload: str) -> str:
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def generate_events(
    count: int,
    keys: int,
    sources: Sequence[Source],
    payload_size: int = 64,
    poison_fraction: float = 0.0,
    seed: int = 1,
) -> list[Event]:
    """`count` events over `keys` keys, both split evenly over `sources`, keys round-robin.

    The payload is random printable text; a key's events are numbered n = 1, 2, 3... in the
    order they are listed (and sent).
    """
    if keys < len(sources) or count < 0:
        names = ", ".join(str(source) for source in sources)
        raise ValueError(f"need at least one key per source ({names}), got {keys}")
    rng = random.Random(seed)
    alphabet = string.ascii_letters + string.digits
    events: list[Event] = []
    for position, source in enumerate(sources):
        source_keys = keys // len(sources) + (1 if position < keys % len(sources) else 0)
        source_count = count // len(sources) + (1 if position < count % len(sources) else 0)
        width = max(4, len(str(source_keys)))
        names = [f"{KEY_PREFIX[source]}{i + 1:0{width}d}" for i in range(source_keys)]
        for i in range(source_count):
            events.append(
                Event(
                    index=len(events),
                    source=source,
                    key=names[i % source_keys],
                    n=i // source_keys + 1,
                    payload="".join(rng.choices(alphabet, k=payload_size)),
                    poison=rng.random() < poison_fraction,
                )
            )
    return events


# --- re-sending failed entries ----------------------------------------------------------


class ResendExhausted(RuntimeError):
    """Entries still failing after every attempt; carries what failed and why."""

    def __init__(self, operation: str, attempts: int, failed: list[dict], errors: list[str]):
        self.operation = operation
        self.attempts = attempts
        self.failed = failed
        self.errors = errors
        super().__init__(
            f"{operation}: {len(failed)} entries still failing after {attempts} attempts "
            f"(errors: {sorted(set(errors))})"
        )


@dataclass
class Backoff:
    """Exponential backoff with full jitter (the AWS Architecture Blog's recommendation)."""

    base_s: float = 0.05
    cap_s: float = 2.0
    rng: random.Random = field(default_factory=random.Random)

    def delay_s(self, attempt: int) -> float:
        return self.rng.uniform(0, min(self.cap_s, self.base_s * 2**attempt))


@dataclass
class ResendStats:
    calls: int = 0
    resent: int = 0
    throttled: int = 0

    def add(self, other: ResendStats) -> None:
        self.calls += other.calls
        self.resent += other.resent
        self.throttled += other.throttled


def _error_code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def put_records_resending_failures(
    client,
    entries: Sequence[dict],
    *,
    stream_name: str | None = None,
    stream_arn: str | None = None,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    backoff: Backoff | None = None,
    sleep: Callable[[float], None] = time.sleep,
    stats: ResendStats | None = None,
) -> list[dict]:
    """PutRecords `entries` until each is accepted; their results (ShardId, SequenceNumber).

    Exactly the entries the response marks with an ErrorCode (FailedRecordCount of them) are
    sent again, after a backoff; a throttled request as a whole is retried the same way.
    """
    backoff = backoff or Backoff()
    stats = stats if stats is not None else ResendStats()
    target = {"StreamARN": stream_arn} if stream_arn else {"StreamName": stream_name}
    results: list[dict | None] = [None] * len(entries)
    pending = list(range(len(entries)))
    errors: list[str] = []
    for attempt in range(max_attempts):
        if attempt:
            sleep(backoff.delay_s(attempt))
        stats.calls += 1
        try:
            response = client.put_records(Records=[entries[i] for i in pending], **target)
        except ClientError as exc:
            if _error_code(exc) not in THROTTLING_ERRORS:
                raise
            stats.throttled += 1
            errors = [_error_code(exc)]
            continue
        failed: list[int] = []
        errors = []
        for i, result in zip(pending, response["Records"], strict=True):
            if result.get("ErrorCode"):
                if result["ErrorCode"] not in RETRYABLE_ENTRY_ERRORS:
                    raise ResendExhausted(
                        "PutRecords", attempt + 1, [entries[i]], [result["ErrorCode"]]
                    )
                failed.append(i)
                errors.append(result["ErrorCode"])
            else:
                results[i] = result
        if len(failed) != response.get("FailedRecordCount", len(failed)):
            raise RuntimeError(
                f"PutRecords reported FailedRecordCount={response['FailedRecordCount']} "
                f"but {len(failed)} entries carry an ErrorCode"
            )
        if not failed:
            return results  # type: ignore[return-value]
        stats.resent += len(failed)
        pending = failed
    raise ResendExhausted("PutRecords", max_attempts, [entries[i] for i in pending], errors)


def batch_write_resending_unprocessed(
    client,
    table_name: str,
    items: Sequence[dict],
    *,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    backoff: Backoff | None = None,
    sleep: Callable[[float], None] = time.sleep,
    stats: ResendStats | None = None,
) -> None:
    """BatchWriteItem PutRequests until DynamoDB reports no UnprocessedItems."""
    backoff = backoff or Backoff()
    stats = stats if stats is not None else ResendStats()
    pending = [{"PutRequest": {"Item": item}} for item in items]
    errors: list[str] = []
    for attempt in range(max_attempts):
        if attempt:
            sleep(backoff.delay_s(attempt))
        stats.calls += 1
        try:
            response = client.batch_write_item(RequestItems={table_name: pending})
        except ClientError as exc:
            if _error_code(exc) not in THROTTLING_ERRORS:
                raise
            stats.throttled += 1
            errors = [_error_code(exc)]
            continue
        unprocessed = response.get("UnprocessedItems", {}).get(table_name, [])
        if not unprocessed:
            return
        stats.resent += len(unprocessed)
        pending = unprocessed
        errors = ["UnprocessedItems"]
    raise ResendExhausted("BatchWriteItem", max_attempts, pending, errors)


# --- what goes into one request ----------------------------------------------------------


@dataclass
class Unit:
    """One entry of a request (a Kinesis record, maybe aggregated, or one item write) and the
    events it carries, in order. `lane` picks the sender thread: a key always has one lane."""

    entry: dict
    events: list[Event]
    lane: str
    size_bytes: int
    keys: frozenset[str] = frozenset()  # default: the keys of `events`

    def __post_init__(self) -> None:
        if not self.keys:
            self.keys = frozenset(event.key for event in self.events)


def plan_batches(
    units: Iterable[Unit], max_entries: int, max_bytes: int, lookahead: int = PLAN_LOOKAHEAD
) -> Iterator[list[Unit]]:
    """Group units into requests, keeping each key's units in order.

    A request holds at most one unit per key; a unit that has to wait also holds back every
    later unit of its keys (so none overtakes it), while units of other keys fill the request.
    The caller sends each request to completion before asking for the next.
    """
    pending = list(units)
    while pending:
        batch: list[Unit] = []
        taken: set[int] = set()
        blocked: set[str] = set()
        batch_bytes = 0
        for position, unit in enumerate(pending[:lookahead]):
            keys = unit.keys
            if keys & blocked:
                blocked |= keys
                continue
            if len(batch) == max_entries or (batch and batch_bytes + unit.size_bytes > max_bytes):
                break
            batch.append(unit)
            taken.add(position)
            blocked |= keys
            batch_bytes += unit.size_bytes
        pending = [unit for position, unit in enumerate(pending) if position not in taken]
        yield batch


def kinesis_units(events: Sequence[Event]) -> list[Unit]:
    units = []
    for event in events:
        data = event.data()
        units.append(
            Unit(
                entry={"Data": data, "PartitionKey": event.key},
                events=[event],
                lane=event.key,
                size_bytes=len(data) + len(event.key),
            )
        )
    return units


def shard_for_partition_key(partition_key: str, shards: Sequence[dict]) -> str:
    """The open shard whose hash key range holds MD5(partition key), as Kinesis routes it."""
    hash_key = int(hashlib.md5(partition_key.encode("utf-8")).hexdigest(), 16)
    for shard in shards:
        low = int(shard["HashKeyRange"]["StartingHashKey"])
        high = int(shard["HashKeyRange"]["EndingHashKey"])
        if low <= hash_key <= high:
            return shard["ShardId"]
    raise ValueError(f"no open shard holds partition key {partition_key!r}")


def aggregated_units(
    events: Sequence[Event], shards: Sequence[dict], max_user_records: int
) -> list[Unit]:
    """KPL-aggregate the events, one aggregator per shard.

    An aggregated record goes to the shard of its first user record's partition key, so
    mixing keys of different shards in one aggregate would move a key's events to another
    shard and break its order; grouping by the key's shard keeps every key on its own shard.
    """
    from aws_kinesis_agg.aggregator import RecordAggregator

    aggregators: dict[str, RecordAggregator] = {}
    carried: dict[str, list[Event]] = {}
    units: list[Unit] = []

    def emit(shard_id: str, record) -> None:
        partition_key, explicit_hash_key, data = record.get_contents()
        entry = {"Data": data, "PartitionKey": partition_key}
        if explicit_hash_key:
            entry["ExplicitHashKey"] = explicit_hash_key
        units.append(Unit(entry, carried[shard_id], shard_id, len(data) + len(partition_key)))
        carried[shard_id] = []

    for event in events:
        shard_id = shard_for_partition_key(event.key, shards)
        aggregator = aggregators.setdefault(shard_id, RecordAggregator())
        carried.setdefault(shard_id, [])
        full = aggregator.add_user_record(event.key, event.data())
        if full is not None:  # the event did not fit: it starts the next aggregate
            emit(shard_id, full)
        carried[shard_id].append(event)
        if aggregator.get_num_user_records() >= max_user_records:
            emit(shard_id, aggregator.clear_and_get())
    for shard_id, aggregator in aggregators.items():
        record = aggregator.clear_and_get()
        if record is not None:
            emit(shard_id, record)
    return units


def dynamodb_units(events: Sequence[Event]) -> list[Unit]:
    return [
        Unit(entry=event.item(), events=[event], lane=event.key, size_bytes=len(event.data()))
        for event in events
    ]


# --- sending -----------------------------------------------------------------------------


class RateLimiter:
    """At most `rate` events per second over all sender threads (0: unlimited)."""

    def __init__(self, rate: float):
        self.rate = rate
        self._next_s = time.monotonic()
        self._lock = threading.Lock()

    def acquire(self, events: int) -> None:
        if self.rate <= 0:
            return
        with self._lock:
            start = max(self._next_s, time.monotonic())
            self._next_s = start + events / self.rate
        time.sleep(max(0.0, start - time.monotonic()))


@dataclass
class SendContext:
    progress: Progress
    limiter: RateLimiter
    positions: dict[int, dict] = field(default_factory=dict)
    stats: dict[Source, ResendStats] = field(
        default_factory=lambda: {source: ResendStats() for source in Source}
    )
    lock: threading.Lock = field(default_factory=threading.Lock)


def sender_lanes(units: Sequence[Unit], workers: int) -> list[list[Unit]]:
    """Units split over `workers` sender threads by lane: a key's units stay on one thread,
    in order, so only that thread's request sequencing has to keep them in order."""
    lanes: list[list[Unit]] = [[] for _ in range(workers)]
    for unit in units:
        lanes[zlib.crc32(unit.lane.encode("utf-8")) % workers].append(unit)
    return [lane for lane in lanes if lane]


def send_kinesis(client, stream: dict, units: Sequence[Unit], ctx: SendContext) -> None:
    stats = ResendStats()
    for batch in plan_batches(units, MAX_RECORDS_PER_PUT, MAX_BYTES_PER_PUT):
        carried = sum(len(unit.events) for unit in batch)
        ctx.limiter.acquire(carried)
        results = put_records_resending_failures(
            client, [unit.entry for unit in batch], stats=stats, **stream
        )
        with ctx.lock:
            for unit, result in zip(batch, results, strict=True):
                for sub_sequence_number, event in enumerate(unit.events):
                    ctx.positions[event.index] = {
                        "shardId": result["ShardId"],
                        "sequenceNumber": result["SequenceNumber"],
                        "subSequenceNumber": sub_sequence_number if len(unit.events) > 1 else 0,
                    }
        ctx.progress.advance(carried)
    with ctx.lock:
        ctx.stats[Source.KINESIS].add(stats)


def send_dynamodb(client, table_name: str, units: Sequence[Unit], ctx: SendContext) -> None:
    stats = ResendStats()
    for batch in plan_batches(units, MAX_ITEMS_PER_BATCH_WRITE, MAX_BYTES_PER_BATCH_WRITE):
        ctx.limiter.acquire(len(batch))
        batch_write_resending_unprocessed(
            client, table_name, [unit.entry for unit in batch], stats=stats
        )
        ctx.progress.advance(len(batch))
    with ctx.lock:
        ctx.stats[Source.DYNAMODB].add(stats)


def run_senders(jobs: list[Callable[[], None]]) -> None:
    """Run each job on its own thread; re-raise the first failure after all have stopped."""
    failures: list[BaseException] = []

    def guarded(job: Callable[[], None]) -> None:
        try:
            job()
        except BaseException as exc:  # reported below, on the caller's thread
            failures.append(exc)

    threads = [threading.Thread(target=guarded, args=(job,), daemon=True) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]


def list_open_shards(client, stream: dict) -> list[dict]:
    shards: list[dict] = []
    kwargs: dict[str, Any] = dict(stream)
    while True:
        response = client.list_shards(**kwargs)
        shards.extend(response["Shards"])
        token = response.get("NextToken")
        if not token:
            break
        kwargs = {"NextToken": token}
    return [s for s in shards if "EndingSequenceNumber" not in s["SequenceNumberRange"]]


def write_manifest(path: Path, events: Sequence[Event], positions: dict, meta: dict) -> None:
    rows = []
    for event in events:
        row = {
            "source": str(event.source),
            "key": event.key,
            "n": event.n,
            "payload": event.payload,
            "payloadSha256": payload_sha256(event.payload),
            "poison": event.poison,
        }
        row.update(positions.get(event.index, {}))
        rows.append(row)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**meta, "events": rows}, indent=None) + "\n")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Push demo events {key, n, payload} to the Kinesis stream and/or the "
        "DynamoDB source table, and write a manifest for verify.py.",
    )
    parser.add_argument("--count", type=int, default=1000, help="events in total (default 1000)")
    parser.add_argument("--keys", type=int, default=20, help="keys in total (default 20)")
    parser.add_argument(
        "--source", choices=["kinesis", "dynamodb", "both"], default="both", help="default both"
    )
    parser.add_argument("--rate", type=float, default=0, help="events per second; 0: unlimited")
    parser.add_argument("--payload-size", type=int, default=64, help="payload characters")
    parser.add_argument(
        "--poison-fraction", type=float, default=0.0, help="share of events marked poison"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed for payloads and poison picks")
    parser.add_argument(
        "--aggregate", action="store_true", help="KPL-aggregate Kinesis records (per shard)"
    )
    parser.add_argument(
        "--aggregate-max-records",
        type=int,
        default=50,
        help="user records per aggregated record at most (default 50)",
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="sender threads per source (default 2)"
    )
    parser.add_argument(
        "--manifest", default="build/manifest.json", help="where to write the manifest"
    )
    add_stack_arguments(parser, "kinesis_stream_name", "kinesis_stream_arn", "source_table_name")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    stack = resolve_stack(args, "kinesis_stream_name", "kinesis_stream_arn", "source_table_name")
    sources = [Source.KINESIS, Source.DYNAMODB] if args.source == "both" else [Source(args.source)]
    if Source.KINESIS in sources and not (
        stack["kinesis_stream_name"] or stack["kinesis_stream_arn"]
    ):
        raise SystemExit("no Kinesis stream: pass --stack or --kinesis-stream-name")
    if Source.DYNAMODB in sources and not stack["source_table_name"]:
        raise SystemExit("no source table: pass --stack or --source-table-name")

    try:
        events = generate_events(
            args.count, args.keys, sources, args.payload_size, args.poison_fraction, args.seed
        )
    except ValueError as exc:
        parser.error(str(exc))
    started = time.monotonic()
    ctx = SendContext(progress=Progress("load", len(events)), limiter=RateLimiter(args.rate))
    jobs: list[Callable[[], None]] = []
    if Source.KINESIS in sources:
        kinesis = boto3.client("kinesis")
        stream = (
            {"stream_name": stack["kinesis_stream_name"]}
            if stack["kinesis_stream_name"]
            else {"stream_arn": stack["kinesis_stream_arn"]}
        )
        kinesis_events = [e for e in events if e.source is Source.KINESIS]
        if args.aggregate:
            api_stream = (
                {"StreamName": stack["kinesis_stream_name"]}
                if stack["kinesis_stream_name"]
                else {"StreamARN": stack["kinesis_stream_arn"]}
            )
            shards = list_open_shards(kinesis, api_stream)
            units = aggregated_units(kinesis_events, shards, args.aggregate_max_records)
        else:
            units = kinesis_units(kinesis_events)
        for lane in sender_lanes(units, args.workers):
            jobs.append(lambda lane=lane: send_kinesis(kinesis, stream, lane, ctx))
    if Source.DYNAMODB in sources:
        dynamodb = boto3.client("dynamodb")
        units = dynamodb_units([e for e in events if e.source is Source.DYNAMODB])
        for lane in sender_lanes(units, args.workers):
            jobs.append(
                lambda lane=lane: send_dynamodb(dynamodb, stack["source_table_name"], lane, ctx)
            )
    complete = False
    try:
        run_senders(jobs)
        complete = True
    finally:
        ctx.progress.finish()
        # Written even when sending failed, marked incomplete: verify.py refuses it then, and
        # it still tells what was meant to go out.
        meta = {
            "version": MANIFEST_VERSION,
            "createdAt": datetime.now(UTC).isoformat(),
            "complete": complete,
            "seed": args.seed,
            "aggregated": args.aggregate,
            "stack": {k: v for k, v in stack.items() if v},
        }
        write_manifest(Path(args.manifest), events, ctx.positions, meta)
    elapsed_s = time.monotonic() - started
    keys = len({(e.source, e.key) for e in events})
    parts = []
    for source in sources:
        stats = ctx.stats[source]
        sent = sum(e.source is source for e in events)
        parts.append(
            f"{sent} {source} ({stats.calls} calls, {stats.resent} re-sent, "
            f"{stats.throttled} throttled)"
        )
    poison = sum(e.poison for e in events)
    print(
        f"sent {len(events)} events over {keys} keys in {elapsed_s:.1f}s: {', '.join(parts)}; "
        f"{poison} poison; manifest {args.manifest}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
