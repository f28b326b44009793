"""Push the demo app's events onto the Kinesis stream and the DynamoDB source table.

Each event is `{"key", "n", "payload"}` (+ `"poison": true`), n = 1, 2, 3... per key. Kinesis
gets it as the record's data with the key as partition key (optionally KPL-aggregated);
the DynamoDB source table gets a PutItem of `{pk, n, payload}` on the key's item, so its
stream carries an INSERT then MODIFYs in order. A manifest JSON lists every event sent (with
its payload and, for Kinesis, its shard and sequence number) for verify.py
(`streamline.tools.manifest.Manifest`).

Poison events (--poison-fraction) fail on purpose, in one of two ways (--poison-kind,
`processor.contracts.PoisonKind`): `handler` marks them `"poison": true`, which the demo
handler refuses, so they are retried and parked after MAX_ATTEMPTS; `contract` sends `n` as a
string, which breaks the demo event's model, so the processor parks them at once (attempts 1).
`mixed` picks either, half and half. The manifest lists every poison event with
`"poison": true`, and a contract violation with `"poisonKind": "contract"` as well.

Every run has a run id, part of each key (`k-<run>-0001`): two runs against one stack never
share a key, so their n's cannot collide in the sink. The manifest is written, marked
incomplete, before the first event goes out, and again at the end: a load that dies leaves
an incomplete manifest (verify.py refuses it), never the previous run's.

Per key, events go out strictly in order: a batch never holds two entries that share a key,
and the next batch of a key's lane goes out only once the previous one was fully accepted.
PutRecords and BatchWriteItem give no order among the entries of one request that fail and
are re-sent, so this is the only way re-sends cannot reorder a key:
https://docs.aws.amazon.com/kinesis/latest/APIReference/API_PutRecords.html
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import random
import string
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from processor.aws import Backoff, error_code, is_throttling
from processor.contracts import DemoEvent, PoisonKind
from processor.records import Source
from streamline.arguments import OneLineParser, integer, number, text
from streamline.tools.interrupts import Interrupted, interruption, interrupts_raised
from streamline.tools.manifest import (
    KEY_PREFIXES,
    MANIFEST_VERSION,
    RUN_ID_PATTERN,
    Manifest,
    ManifestEvent,
    new_run_id,
    payload_sha256,
    run_key,
    write_manifest,
)
from streamline.tools.progress import Progress
from streamline.tools.stack import (
    AWS_ERRORS,
    StackFileError,
    add_stack_arguments,
    describe_aws_error,
    resolve_stack,
)

MAX_RECORDS_PER_PUT = 500
MAX_BYTES_PER_PUT = 5 * 1024 * 1024
MAX_ITEMS_PER_BATCH_WRITE = 25
MAX_BYTES_PER_BATCH_WRITE = 16 * 1024 * 1024
# How far past a blocked entry the batch planner looks for entries of other keys.
PLAN_LOOKAHEAD = 4 * MAX_RECORDS_PER_PUT
DEFAULT_MAX_ATTEMPTS = 20
# A poison event's message carries the payload base64-encoded, and SQS takes 256 KiB.
MAX_PAYLOAD_SIZE = 100_000
# Every event, payload included, is held in memory and written to the manifest: a bound that
# refuses a mistyped count at once rather than running out of memory later.
MAX_EVENTS = 10_000_000
MAX_WORKERS = 64  # sender threads per source

MIXED_POISON = "mixed"  # a poison event fails either way, half and half
POISON_KINDS = (PoisonKind.HANDLER.value, PoisonKind.CONTRACT.value, MIXED_POISON)

# Per-entry PutRecords errors worth re-sending; anything else (KMS access, say) is fatal.
# Whole-request errors worth retrying are processor.aws.THROTTLING_ERRORS.
RETRYABLE_ENTRY_ERRORS = frozenset({"ProvisionedThroughputExceededException", "InternalFailure"})


class ExitCode(IntEnum):
    OK = 0  # every event accepted; the manifest is complete
    SEND_FAILED = 1  # sending failed part-way; the manifest is marked incomplete
    CANNOT_START = 2  # bad arguments, stack file or names, AWS unreachable: nothing was sent
    INTERRUPTED = 130  # SIGINT (SIGTERM: 143); the manifest is marked incomplete


EXIT_CODES = """exit status:
  0    every event accepted by the stream or table; the manifest is complete
  1    sending failed part-way (an error that re-sending cannot fix, or the endpoint went
       away); the manifest is marked incomplete and verify.py refuses it
  2    nothing was sent: bad arguments, an unusable stack file, a stream or table that is
       not there, or AWS unreachable, denied or without credentials
  130  interrupted by Ctrl-C (143: SIGTERM); the manifest is marked incomplete
"""


class CannotStart(Exception):
    """Nothing was sent: one line says why."""


@dataclass(frozen=True)
class Event:
    """One demo event (`processor.contracts.DemoEvent`) on its way to `source`; `index` is its
    place in the manifest."""

    index: int
    source: Source
    key: str
    n: int
    payload: str
    poison: bool = False
    poison_kind: PoisonKind = PoisonKind.HANDLER  # how a poison event fails

    @property
    def breaks_contract(self) -> bool:
        return self.poison and self.poison_kind is PoisonKind.CONTRACT

    @property
    def demo(self) -> DemoEvent:
        return DemoEvent(
            self.key,
            self.n,
            self.payload,
            poison=self.poison and not self.breaks_contract,
            breaks_contract=self.breaks_contract,
        )

    def body(self) -> dict[str, Any]:
        return self.demo.body()

    def data(self) -> bytes:
        return self.demo.data()

    def item(self) -> dict[str, dict]:
        return self.demo.item()


def generate_events(
    count: int,
    keys: int,
    sources: Sequence[Source],
    payload_size: int = 64,
    poison_fraction: float = 0.0,
    seed: int = 1,
    run_id: str | None = None,
    poison_kind: str = POISON_KINDS[0],
) -> list[Event]:
    """`count` events over `keys` keys, both split evenly over `sources`, keys round-robin.

    The payload is random printable text; a key's events are numbered n = 1, 2, 3... in the
    order they are listed (and sent). With `run_id`, keys are `k-<run>-0001`, else `k-0001`.
    `poison_kind` is one of POISON_KINDS: how the poison events fail (the same seed picks the
    same events and payloads whatever the kind).
    """
    if poison_kind not in POISON_KINDS:
        raise ValueError(f"poison kind must be one of {', '.join(POISON_KINDS)}: {poison_kind!r}")
    if count < 0:
        raise ValueError(f"the event count cannot be negative, got {count}")
    if keys < len(sources):
        names = ", ".join(str(source) for source in sources)
        raise ValueError(f"need at least one key per source ({names}), got {keys}")
    rng = random.Random(seed)
    alphabet = string.ascii_letters + string.digits
    events: list[Event] = []
    for position, source in enumerate(sources):
        source_keys = keys // len(sources) + (1 if position < keys % len(sources) else 0)
        source_count = count // len(sources) + (1 if position < count % len(sources) else 0)
        width = max(4, len(str(source_keys)))
        if run_id is None:
            names = [f"{KEY_PREFIXES[source]}{i + 1:0{width}d}" for i in range(source_keys)]
        else:
            names = [run_key(source, run_id, i + 1, width) for i in range(source_keys)]
        for i in range(source_count):
            payload = "".join(rng.choices(alphabet, k=payload_size))
            poison = rng.random() < poison_fraction
            kind = PoisonKind.HANDLER
            if poison and poison_kind == MIXED_POISON:
                kind = PoisonKind.CONTRACT if rng.random() < 0.5 else PoisonKind.HANDLER
            elif poison:
                kind = PoisonKind(poison_kind)
            events.append(
                Event(
                    index=len(events),
                    source=source,
                    key=names[i % source_keys],
                    n=i // source_keys + 1,
                    payload=payload,
                    poison=poison,
                    poison_kind=kind,
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
class ResendStats:
    calls: int = 0
    resent: int = 0
    throttled: int = 0

    def add(self, other: ResendStats) -> None:
        self.calls += other.calls
        self.resent += other.resent
        self.throttled += other.throttled


def _try_request(
    send: Callable[[], dict],
    attempt: int,
    backoff: Backoff,
    sleep: Callable[[float], None],
    stats: ResendStats,
) -> tuple[dict | None, list[str]]:
    """One try of a whole request, after a backoff unless it is the first: its response, or
    None and the error code when the request as a whole was throttled (anything else raises)."""
    if attempt:
        sleep(backoff.delay_s(attempt))
    stats.calls += 1
    try:
        return send(), []
    except ClientError as exc:
        if not is_throttling(exc):
            raise
        stats.throttled += 1
        return None, [error_code(exc)]


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
        send = functools.partial(
            client.put_records, Records=[entries[i] for i in pending], **target
        )
        response, errors = _try_request(send, attempt, backoff, sleep, stats)
        if response is None:
            continue
        failed: list[int] = []
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
        send = functools.partial(client.batch_write_item, RequestItems={table_name: pending})
        response, errors = _try_request(send, attempt, backoff, sleep, stats)
        if response is None:
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
    stop: threading.Event = field(default_factory=threading.Event)  # senders end at a batch


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
        if ctx.stop.is_set():
            break
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
        if ctx.stop.is_set():
            break
        ctx.limiter.acquire(len(batch))
        batch_write_resending_unprocessed(
            client, table_name, [unit.entry for unit in batch], stats=stats
        )
        ctx.progress.advance(len(batch))
    with ctx.lock:
        ctx.stats[Source.DYNAMODB].add(stats)


def run_senders(jobs: list[Callable[[], None]], stop: threading.Event | None = None) -> None:
    """Run each job on its own thread; re-raise the first failure after all have stopped.

    A failing job sets `stop`, so the others end after their current request; so does an
    exception in the caller's thread while it waits (Ctrl-C), which is then re-raised.
    """
    stop = stop if stop is not None else threading.Event()
    failures: list[BaseException] = []

    def guarded(job: Callable[[], None]) -> None:
        try:
            job()
        except BaseException as exc:  # reported below, on the caller's thread
            failures.append(exc)
            stop.set()

    threads = [threading.Thread(target=guarded, args=(job,), daemon=True) for job in jobs]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    except BaseException:
        stop.set()
        raise
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


def manifest_for(
    events: Sequence[Event], positions: dict[int, dict], meta: dict, complete: bool
) -> Manifest:
    rows: list[ManifestEvent] = []
    for event in events:
        row: ManifestEvent = {
            "source": event.source.value,
            "key": event.key,
            "n": event.n,
            "payload": event.payload,
            "payloadSha256": payload_sha256(event.payload),
            "poison": event.poison,
        }
        if event.breaks_contract:
            # Only then, so a manifest without contract violations reads as before.
            row["poisonKind"] = PoisonKind.CONTRACT.value
        row.update(positions.get(event.index, {}))  # type: ignore[typeddict-item]
        rows.append(row)
    return {
        "version": MANIFEST_VERSION,
        **meta,  # type: ignore[typeddict-item]
        "complete": complete,
        "eventCount": len(rows),
        "events": rows,
        "sha256": "",  # sealed by write_manifest
    }


# --- command line --------------------------------------------------------------------------

# The stack's names load needs (build/stack.json keys, or the flags named after them).
STACK_KEYS = ("kinesis_stream_name", "kinesis_stream_arn", "source_table_name")


def _run_id(value: str) -> str:
    if not RUN_ID_PATTERN.fullmatch(value):
        raise argparse.ArgumentTypeError(
            f"must be 1-16 lowercase letters and digits, got {value!r}"
        )
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        description="Push demo events {key, n, payload} to the Kinesis stream and/or the\n"
        "DynamoDB source table, and write a manifest for verify.py. Keys carry the run id\n"
        "(k-<run>-0001), so runs against one stack never collide.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--count",
        type=integer(1, MAX_EVENTS),
        default=1000,
        help=f"events in total, at most {MAX_EVENTS:,} (default 1000)",
    )
    parser.add_argument(
        "--keys",
        type=integer(1, MAX_EVENTS),
        default=20,
        help="keys in total (default 20)",
    )
    parser.add_argument(
        "--source", choices=["kinesis", "dynamodb", "both"], default="both", help="default both"
    )
    parser.add_argument("--rate", type=number(0), default=0, help="events per second; 0: unlimited")
    parser.add_argument(
        "--payload-size",
        type=integer(0, MAX_PAYLOAD_SIZE),
        default=64,
        help=f"payload characters, at most {MAX_PAYLOAD_SIZE} so a parked event keeps its "
        "payload on the poison queue (default 64)",
    )
    parser.add_argument(
        "--poison-fraction",
        type=number(0, 1),
        default=0.0,
        help="share of events marked poison, from 0 to 1 (default 0)",
    )
    parser.add_argument(
        "--poison-kind",
        choices=POISON_KINDS,
        default=POISON_KINDS[0],
        help="how poison events fail: handler (marked poison: the handler raises; parked after "
        "MAX_ATTEMPTS), contract (n sent as a string: breaks the event's model; parked at "
        "once), mixed (either, half and half); default handler",
    )
    parser.add_argument(
        "--seed", type=integer(), default=1, help="seed for payloads and poison picks"
    )
    parser.add_argument(
        "--run-id",
        type=_run_id,
        default=None,
        help="names this run's keys (k-<run>-0001); default: random",
    )
    parser.add_argument(
        "--aggregate", action="store_true", help="KPL-aggregate Kinesis records (per shard)"
    )
    parser.add_argument(
        "--aggregate-max-records",
        type=integer(1),
        default=50,
        help="user records per aggregated record at most (default 50)",
    )
    parser.add_argument(
        "--workers",
        type=integer(1, MAX_WORKERS),
        default=2,
        help=f"sender threads per source, at most {MAX_WORKERS} (default 2)",
    )
    parser.add_argument(
        "--manifest", type=text, default="build/manifest.json", help="where to write the manifest"
    )
    add_stack_arguments(parser, *STACK_KEYS)
    return parser


def main(argv: list[str] | None = None, session: Any = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # bad arguments: one line, exit 2
    with interrupts_raised():
        try:
            return _load(args, session)
        except CannotStart as exc:
            print(f"load: nothing sent: {exc}", file=sys.stderr)
            return ExitCode.CANNOT_START
        except (Interrupted, KeyboardInterrupt) as exc:
            name, status = interruption(exc)  # 130 (ExitCode.INTERRUPTED) for SIGINT
            print(
                f"load: interrupted ({name}); manifest {args.manifest} marked incomplete",
                file=sys.stderr,
            )
            return status


def _load(args: argparse.Namespace, session: Any) -> int:
    stack, sources = _destinations(args)
    run_id = args.run_id or new_run_id()
    events = _events(args, sources, run_id)
    kinesis, dynamodb = _clients(session, sources)
    stream = _stream(stack)
    _check_access(kinesis, _api_stream(stream), dynamodb, stack["source_table_name"])

    started = time.monotonic()
    ctx = SendContext(progress=Progress("load", len(events)), limiter=RateLimiter(args.rate))
    jobs = _kinesis_jobs(args, kinesis, stream, events, ctx) + _dynamodb_jobs(
        args, dynamodb, stack["source_table_name"], events, ctx
    )
    manifest_path = Path(args.manifest)
    save = _manifest_saver(manifest_path, events, _run_meta(args, run_id, stack), ctx)
    # Before anything goes out: from here on, the file at --manifest is this run's.
    try:
        save(False)
    except OSError as exc:
        raise CannotStart(f"cannot write manifest {manifest_path}: {exc}") from exc
    if not _send(jobs, ctx, save, f"manifest {manifest_path} marked incomplete"):
        return ExitCode.SEND_FAILED
    print(
        f"{_sent_line(events, sources, ctx, time.monotonic() - started)}; run {run_id}; "
        f"manifest {manifest_path}"
    )
    return ExitCode.OK


def _destinations(args: argparse.Namespace) -> tuple[dict[str, str | None], list[Source]]:
    """The stack's names and the sources to load, each with somewhere to go."""
    try:
        stack = resolve_stack(args, *STACK_KEYS)
    except StackFileError as exc:
        raise CannotStart(str(exc)) from exc
    sources = [Source.KINESIS, Source.DYNAMODB] if args.source == "both" else [Source(args.source)]
    if Source.KINESIS in sources and not (
        stack["kinesis_stream_name"] or stack["kinesis_stream_arn"]
    ):
        raise CannotStart("no Kinesis stream: pass --stack or --kinesis-stream-name")
    if Source.DYNAMODB in sources and not stack["source_table_name"]:
        raise CannotStart("no source table: pass --stack or --source-table-name")
    return stack, sources


def _events(args: argparse.Namespace, sources: list[Source], run_id: str) -> list[Event]:
    try:
        return generate_events(
            args.count,
            args.keys,
            sources,
            args.payload_size,
            args.poison_fraction,
            args.seed,
            run_id=run_id,
            poison_kind=args.poison_kind,
        )
    except ValueError as exc:
        raise CannotStart(str(exc)) from exc


def _clients(session: Any, sources: list[Source]) -> tuple[Any, Any]:
    """The Kinesis and DynamoDB clients (None for a source not loaded)."""
    try:
        if session is None:
            import boto3

            session = boto3.Session()
        kinesis = session.client("kinesis") if Source.KINESIS in sources else None
        dynamodb = session.client("dynamodb") if Source.DYNAMODB in sources else None
    except AWS_ERRORS as exc:
        raise CannotStart(describe_aws_error(exc)) from exc
    return kinesis, dynamodb


def _stream(stack: dict[str, str | None]) -> dict:
    """The stream as `put_records_resending_failures` takes it: by name if the stack has one."""
    if stack["kinesis_stream_name"]:
        return {"stream_name": stack["kinesis_stream_name"]}
    return {"stream_arn": stack["kinesis_stream_arn"]}


def _api_stream(stream: dict) -> dict:
    """`put_records_resending_failures`' stream argument as boto3's Kinesis calls name it."""
    if "stream_name" in stream:
        return {"StreamName": stream["stream_name"]}
    return {"StreamARN": stream["stream_arn"]}


def _kinesis_jobs(
    args: argparse.Namespace, kinesis, stream: dict, events: Sequence[Event], ctx: SendContext
) -> list[Callable[[], None]]:
    """One sender per lane of the Kinesis events (KPL-aggregated per shard with --aggregate)."""
    if kinesis is None:
        return []
    kinesis_events = [e for e in events if e.source is Source.KINESIS]
    if args.aggregate:
        try:
            shards = list_open_shards(kinesis, _api_stream(stream))
        except AWS_ERRORS as exc:
            raise CannotStart(describe_aws_error(exc, "listing the stream's shards")) from exc
        units = aggregated_units(kinesis_events, shards, args.aggregate_max_records)
    else:
        units = kinesis_units(kinesis_events)
    return [
        functools.partial(send_kinesis, kinesis, stream, lane, ctx)
        for lane in sender_lanes(units, args.workers)
    ]


def _dynamodb_jobs(
    args: argparse.Namespace, dynamodb, table_name: str | None, events: Sequence[Event], ctx
) -> list[Callable[[], None]]:
    """One sender per lane of the DynamoDB events."""
    if dynamodb is None:
        return []
    units = dynamodb_units([e for e in events if e.source is Source.DYNAMODB])
    return [
        functools.partial(send_dynamodb, dynamodb, table_name, lane, ctx)
        for lane in sender_lanes(units, args.workers)
    ]


def _run_meta(args: argparse.Namespace, run_id: str, stack: dict[str, str | None]) -> dict:
    """The manifest's fields that describe the run."""
    return {
        "runId": run_id,
        "createdAt": datetime.now(UTC).isoformat(),
        "seed": args.seed,
        "aggregated": args.aggregate,
        "stack": {k: v for k, v in stack.items() if v},
    }


def _manifest_saver(
    path: Path, events: Sequence[Event], meta: dict, ctx: SendContext
) -> Callable[[bool], None]:
    """Writes the manifest with the positions sent so far, complete or not."""

    def save(complete: bool) -> None:
        with ctx.lock:
            positions = dict(ctx.positions)
        write_manifest(path, manifest_for(events, positions, meta, complete))

    return save


def _send(
    jobs: list[Callable[[], None]],
    ctx: SendContext,
    save: Callable[[bool], None],
    incomplete: str,
) -> bool:
    """Run the senders; whether every event went out. The manifest is saved either way,
    complete only then."""
    complete = False
    try:
        run_senders(jobs, ctx.stop)
        complete = True
    except (*AWS_ERRORS, ResendExhausted) as exc:
        what = describe_aws_error(exc) if isinstance(exc, AWS_ERRORS) else str(exc)
        print(
            f"load: sending failed after {ctx.progress.done} of {ctx.progress.total} events: "
            f"{what}; {incomplete}",
            file=sys.stderr,
        )
    finally:
        ctx.progress.finish()
        save(complete)
    return complete


def _sent_line(
    events: Sequence[Event], sources: list[Source], ctx: SendContext, elapsed_s: float
) -> str:
    """What went out, per source, with the requests it took."""
    keys_sent = len({(e.source, e.key) for e in events})
    parts = []
    for source in sources:
        stats = ctx.stats[source]
        sent = sum(e.source is source for e in events)
        parts.append(
            f"{sent} {source} ({stats.calls} calls, {stats.resent} re-sent, "
            f"{stats.throttled} throttled)"
        )
    poison = sum(e.poison for e in events)
    violations = sum(e.breaks_contract for e in events)
    kinds = f" ({violations} breaking the event's contract)" if violations else ""
    return (
        f"sent {len(events)} events over {keys_sent} keys in {elapsed_s:.1f}s: "
        f"{', '.join(parts)}; {poison} poison{kinds}"
    )


def _check_access(kinesis, api_stream: dict, dynamodb, table_name: str | None) -> None:
    """The stream and table are there and writable-looking, before the first event goes out."""
    if kinesis is not None:
        name = api_stream.get("StreamName") or api_stream.get("StreamARN")
        try:
            summary = kinesis.describe_stream_summary(**api_stream)["StreamDescriptionSummary"]
        except AWS_ERRORS as exc:
            raise CannotStart(describe_aws_error(exc, f"Kinesis stream {name}")) from exc
        if summary["StreamStatus"] not in ("ACTIVE", "UPDATING"):
            raise CannotStart(f"Kinesis stream {name} is {summary['StreamStatus']}, not ACTIVE")
    if dynamodb is not None:
        try:
            table = dynamodb.describe_table(TableName=table_name)["Table"]
        except AWS_ERRORS as exc:
            raise CannotStart(describe_aws_error(exc, f"source table {table_name}")) from exc
        if table["TableStatus"] not in ("ACTIVE", "UPDATING"):
            raise CannotStart(f"source table {table_name} is {table['TableStatus']}, not ACTIVE")


if __name__ == "__main__":
    sys.exit(main())
