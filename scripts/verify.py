"""Check the demo pipeline's outcome against load.py's manifest.

Per key the demo handler keeps `count`, `last_n` and the hash chain
`h = sha256(h_prev || payload)` in the sink table. From the manifest this recomputes what
each key should hold: every event applied exactly once and in order, except the poison
events, which must sit on the poison queue with their payload. Then, per key:

- sink count below the chain's length: events lost (a parked poison event missing from the
  queue counts as lost too);
- sink count above it: events applied more than once (duplicated);
- equal count but another hash (or last_n): applied out of order;
- a parked event that is not poison, or parked without its payload: an unexpected park.

The poison queue is read without consuming it: messages are received with a short
visibility timeout and made visible again at once, so replay.py still finds them.

It waits (up to --timeout) until the sink matches or stops changing for --settle seconds,
prints one summary line and exits 1 on any loss, duplicate, reorder or unexpected park.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import boto3
from boto3.dynamodb.types import TypeDeserializer

from processor.contracts import PoisonMessage
from scripts.progress import Progress
from scripts.stack import add_stack_arguments, resolve_stack

# Long enough to read a whole queue before anything reappears; set back to 0 right after.
READ_VISIBILITY_TIMEOUT_S = 60
MAX_DETAIL_LINES = 20

EXIT_OK = 0
EXIT_MISMATCH = 1
EXIT_UNUSABLE = 2


def chain(previous_hex: str, payload: str) -> str:
    """One link of the per-key hash chain, recomputed here independently of the handler."""
    return hashlib.sha256(bytes.fromhex(previous_hex) + payload.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class SentEvent:
    source: str
    key: str
    n: int
    payload: str
    poison: bool


@dataclass(frozen=True)
class SinkRow:
    key: str
    last_n: int
    count: int
    h: str


@dataclass(frozen=True)
class ParkedEvent:
    """A poison message read back: the event it carries, or None where it was left out."""

    message_id: str
    source: str
    key: str | None
    n: int | None
    payload: str | None
    poison: bool
    error_type: str
    problem: str | None = None  # why the event could not be read back from the message


class ManifestError(Exception):
    """The manifest cannot be verified against (missing, unreadable or incomplete)."""


def load_manifest(path: Path) -> list[SentEvent]:
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ManifestError(f"cannot read manifest {path}: {exc}") from exc
    if not manifest.get("complete", False):
        raise ManifestError(f"manifest {path} is incomplete: load.py failed while sending")
    return [
        SentEvent(e["source"], e["key"], int(e["n"]), e["payload"], bool(e.get("poison")))
        for e in manifest["events"]
    ]


_deserializer = TypeDeserializer()


def parked_event(message_id: str, body: str) -> ParkedEvent:
    """Decode the event a PoisonMessage carries (Kinesis `data`, DynamoDB `NewImage`)."""
    try:
        message: PoisonMessage = json.loads(body)
        source = message["source"]
        error_type = message["error"]["type"]
    except (ValueError, KeyError, TypeError) as exc:
        return ParkedEvent(
            message_id, "?", None, None, None, False, "?", f"not a poison message: {exc}"
        )
    unread = ParkedEvent(
        message_id, source, message.get("partitionKey"), None, None, False, error_type
    )
    if message.get("truncated"):
        return _with_problem(unread, "parked without payload (truncated)")
    try:
        if source == "kinesis":
            body_fields = json.loads(base64.b64decode(message["data"], validate=True))
        else:
            image = message["dynamodb"]["NewImage"]
            body_fields = {name: _deserializer.deserialize(value) for name, value in image.items()}
            body_fields["key"] = body_fields.get("pk")
        return ParkedEvent(
            message_id,
            source,
            str(body_fields["key"]),
            int(body_fields["n"]),
            str(body_fields["payload"]),
            bool(body_fields.get("poison", False)),
            error_type,
        )
    except (KeyError, ValueError, TypeError, binascii.Error) as exc:
        return _with_problem(unread, f"payload unreadable: {type(exc).__name__}: {exc}")


def _with_problem(event: ParkedEvent, problem: str) -> ParkedEvent:
    return ParkedEvent(
        event.message_id, event.source, event.key, None, None, False, event.error_type, problem
    )


@dataclass
class Report:
    events: int = 0
    keys: int = 0
    applied_in_order: int = 0
    parked: int = 0
    lost: int = 0
    duplicated: int = 0
    out_of_order: int = 0  # keys
    unexpectedly_parked: int = 0
    settled_keys: int = 0  # keys whose state is final and right
    details: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.out_of_order or self.unexpectedly_parked)

    def summary(self) -> str:
        line = (
            f"verified {self.events} events over {self.keys} keys: "
            f"{self.applied_in_order} applied in order, {self.parked} parked, "
            f"{self.lost} lost, {self.duplicated} duplicated, {self.out_of_order} out of order"
        )
        if self.unexpectedly_parked:
            line += f", {self.unexpectedly_parked} unexpectedly parked"
        return line


def assess(
    events: Sequence[SentEvent], sink: dict[str, SinkRow], parked: Iterable[ParkedEvent]
) -> Report:
    """Compare what was sent with the sink rows and the parked events (no I/O)."""
    by_key: dict[str, list[SentEvent]] = defaultdict(list)
    for event in events:
        by_key[event.key].append(event)
    parked_by_key: dict[str, list[ParkedEvent]] = defaultdict(list)
    report = Report(events=len(events), keys=len(by_key))
    for event in parked:
        if event.problem:
            # Which event this is cannot be told, so it is matched to nothing; if it belongs to
            # this run its event shows up as lost as well.
            if event.key is None or event.key in by_key:
                report.unexpectedly_parked += 1
                report.details.append(f"parked message {event.message_id}: {event.problem}")
            continue
        if event.key in by_key:
            parked_by_key[event.key].append(event)

    for key in sorted(by_key):
        sent = sorted(by_key[key], key=lambda e: e.n)
        sent_by_n = {e.n: e for e in sent}
        parked_ns: set[int] = set()
        for event in parked_by_key.get(key, []):
            original = sent_by_n.get(event.n)
            where = f"{key} n={event.n} (message {event.message_id}, {event.error_type})"
            if event.n in parked_ns:
                report.duplicated += 1
                report.details.append(f"parked twice: {where}")
            elif original is None:
                report.unexpectedly_parked += 1
                report.details.append(f"parked but never sent: {where}")
            elif event.payload != original.payload:
                report.unexpectedly_parked += 1
                report.details.append(f"parked with another payload: {where}")
            elif not original.poison:
                parked_ns.add(event.n)
                report.unexpectedly_parked += 1
                report.details.append(f"parked but not poison: {where}")
            else:
                parked_ns.add(event.n)
                report.parked += 1
        missing_parks = [e.n for e in sent if e.poison and e.n not in parked_ns]
        if missing_parks:
            report.lost += len(missing_parks)
            report.details.append(f"poison not on the poison queue: {key} n={missing_parks}")

        applied = [e for e in sent if not e.poison and e.n not in parked_ns]
        prefix_h = [""]
        for event in applied:
            prefix_h.append(chain(prefix_h[-1], event.payload))
        row = sink.get(key, SinkRow(key, 0, 0, ""))
        expected = len(applied)
        expected_last_n = applied[-1].n if applied else 0
        if row.count < expected:
            report.lost += expected - row.count
            if row.count == 0:
                state = "none applied"
            elif row.h == prefix_h[row.count]:
                report.applied_in_order += row.count
                state = f"the first {row.count} applied in order"
            else:
                state = "its history differs from the chain"
            report.details.append(f"lost: {key} has {row.count} of {expected} events, {state}")
        elif row.count > expected:
            report.duplicated += row.count - expected
            report.details.append(f"duplicated: {key} has {row.count} of {expected} events")
        elif row.h != prefix_h[-1] or (expected and row.last_n != expected_last_n):
            report.out_of_order += 1
            report.details.append(
                f"out of order: {key} has all {expected} events (last_n={row.last_n}, "
                f"expected {expected_last_n}) but h={row.h[:12]}… instead of {prefix_h[-1][:12]}…"
            )
        else:
            report.applied_in_order += row.count
            if not missing_parks:
                report.settled_keys += 1
    return report


# --- reading the pipeline's state ----------------------------------------------------------


def read_sink(client, table_name: str) -> dict[str, SinkRow]:
    rows: dict[str, SinkRow] = {}
    for page in client.get_paginator("scan").paginate(TableName=table_name, ConsistentRead=True):
        for item in page["Items"]:
            key = item["pk"]["S"]
            rows[key] = SinkRow(
                key=key,
                last_n=int(item.get("last_n", {}).get("N", "0")),
                count=int(item.get("count", {}).get("N", "0")),
                h=item.get("h", {}).get("S", ""),
            )
    return rows


def peek_queue(client, queue_url: str) -> list[dict]:
    """Every message on the queue, left on it: received while hidden, then made visible.

    SQS has no peek; receiving with visibility 0 would hand back the same first messages
    over and over, so the messages are hidden while the queue is walked and released after.
    """
    messages: dict[str, dict] = {}
    handles: list[str] = []
    try:
        while True:
            response = client.receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=10,
                VisibilityTimeout=READ_VISIBILITY_TIMEOUT_S,
                WaitTimeSeconds=1,  # long polling asks every SQS host, not a sample
                AttributeNames=["All"],
            )
            batch = response.get("Messages", [])
            if not batch:
                break
            for message in batch:
                messages.setdefault(message["MessageId"], message)
                handles.append(message["ReceiptHandle"])
    finally:
        release(client, queue_url, handles)
    return list(messages.values())


def release(client, queue_url: str, receipt_handles: Sequence[str]) -> None:
    """Make received messages visible again right away."""
    for start in range(0, len(receipt_handles), 10):
        entries = [
            {"Id": str(i), "ReceiptHandle": handle, "VisibilityTimeout": 0}
            for i, handle in enumerate(receipt_handles[start : start + 10])
        ]
        client.change_message_visibility_batch(QueueUrl=queue_url, Entries=entries)


def read_parked(client, queue_url: str) -> list[ParkedEvent]:
    return [parked_event(m["MessageId"], m["Body"]) for m in peek_queue(client, queue_url)]


def wait_for_outcome(
    events: Sequence[SentEvent],
    read_state,
    timeout_s: float,
    settle_s: float,
    poll_s: float,
    progress: Progress | None = None,
) -> Report:
    """Assess until every key is right, the state stops changing for `settle_s`, or timeout."""
    deadline = time.monotonic() + timeout_s
    last_state = None
    last_change = time.monotonic()
    while True:
        sink, parked = read_state()
        report = assess(events, sink, parked)
        done = report.applied_in_order + report.parked
        if progress is not None:
            progress.update(done, note=f"{report.settled_keys}/{report.keys} keys settled")
        if report.ok and report.settled_keys == report.keys:
            return report
        state = (tuple(sorted(sink.items())), tuple(sorted(p.message_id for p in parked)))
        now = time.monotonic()
        if state != last_state:
            last_state, last_change = state, now
        elif now - last_change >= settle_s:
            return report
        if now >= deadline:
            return report
        time.sleep(poll_s)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Verify the demo pipeline against load.py's manifest: every event applied "
        "exactly once and in order per key, or parked with its payload. Exit 1 otherwise."
    )
    parser.add_argument("--manifest", default="build/manifest.json")
    parser.add_argument(
        "--timeout", type=float, default=120, help="seconds to wait for the pipeline to drain"
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=15,
        help="give up waiting once nothing changed for this many seconds (default 15)",
    )
    parser.add_argument("--poll", type=float, default=1.0, help="seconds between reads")
    parser.add_argument("--no-wait", action="store_true", help="assess the current state once")
    add_stack_arguments(parser, "sink_table_name", "poison_queue_url", "on_failure_queue_url")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    stack = resolve_stack(args, "sink_table_name", "poison_queue_url", "on_failure_queue_url")
    if not stack["sink_table_name"] or not stack["poison_queue_url"]:
        print("need the sink table and poison queue: --stack or explicit names", file=sys.stderr)
        return EXIT_UNUSABLE
    try:
        events = load_manifest(Path(args.manifest))
    except ManifestError as exc:
        print(exc, file=sys.stderr)
        return EXIT_UNUSABLE
    dynamodb = boto3.client("dynamodb")
    sqs = boto3.client("sqs")

    def read_state():
        return (
            read_sink(dynamodb, stack["sink_table_name"]),
            read_parked(sqs, stack["poison_queue_url"]),
        )

    progress = Progress("verify", len(events))
    if args.no_wait:
        report = wait_for_outcome(events, read_state, 0, 0, 0)
    else:
        report = wait_for_outcome(
            events, read_state, args.timeout, args.settle, args.poll, progress
        )
        progress.finish()
    print(report.summary())
    if not report.ok and stack["on_failure_queue_url"]:
        # Batches the ESM gave up on are the usual place lost events went.
        waiting = sqs.get_queue_attributes(
            QueueUrl=stack["on_failure_queue_url"],
            AttributeNames=["ApproximateNumberOfMessages"],
        )["Attributes"]["ApproximateNumberOfMessages"]
        if int(waiting):
            report.details.insert(
                0, f"{waiting} batch(es) on the on-failure queue: replay.py --from on-failure"
            )
    for line in report.details[:MAX_DETAIL_LINES]:
        print(f"  {line}")
    if len(report.details) > MAX_DETAIL_LINES:
        print(f"  … and {len(report.details) - MAX_DETAIL_LINES} more")
    return EXIT_OK if report.ok else EXIT_MISMATCH


if __name__ == "__main__":
    sys.exit(main())
