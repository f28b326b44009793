"""Check the demo pipeline's outcome against load.py's manifest.

Per key the demo handler keeps, in the sink table, `count`, `last_n` and the hash chain
`h = sha256(h_prev || payload)` of the events it applied in order, the events a replay
applied (`replayed`: "n:sha256(payload)"), and how many producer duplicates it skipped.
From the manifest this recomputes what each key should hold: every event applied exactly
once and in order, except the poison events, which must sit on the poison queue with their
payload or have been applied by a replay. Then, per key:

- sink count below the chain's length: events lost (a poison event neither parked nor
  replayed counts as lost too);
- sink count above it: events applied more than once by the pipeline (duplicated);
- equal count but another hash (or last_n): applied out of order;
- a parked event that is not poison, or parked without its payload: an unexpected park;
- a poison event sent breaking the event's contract (manifest `"poisonKind": "contract"`)
  must be parked as a contract violation (`InvalidPayloadError`) on its first attempt:
  parked otherwise (after retries, with another error) it is an unexpected park too, and so
  is any other event parked as a contract violation;
- a replayed event that was never sent, or with another payload: an unexpected replay;
- a sink row or poison message of this run's keys that the manifest does not list.

Producer duplicates (the producer wrote an event twice, so the stream holds it under two
sequence numbers; the handler skips the second) are reported apart and are not a failure;
two parked copies of one event under different sequence numbers are counted the same way.

The poison queue is read without consuming it: messages are received with a short
visibility timeout and made visible again at once, also on SIGINT/SIGTERM. Messages that
another reader holds (ApproximateNumberOfMessagesNotVisible) are "in flight": while any
are, nothing missing is called lost.

It waits (up to --timeout) until the sink matches, or nothing changed for --settle seconds,
and prints one summary line; see EXIT_CODES for what the exit status means.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import hashlib
import json
import signal
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Container, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any

from boto3.dynamodb.types import TypeDeserializer

from processor.contracts import CONTRACT_VIOLATION_ERROR, DemoEvent, PoisonKind, PoisonMessage
from streamline.arguments import OneLineParser, number, text
from streamline.tools.interrupts import Interrupted, interruption, interrupts_raised
from streamline.tools.manifest import (
    Manifest,
    ManifestError,
    belongs_to_run,
    payload_sha256,
    read_manifest,
)
from streamline.tools.progress import Progress
from streamline.tools.queues import in_flight, receive, visibility_batches
from streamline.tools.stack import (
    AWS_ERRORS,
    StackFileError,
    add_stack_arguments,
    describe_aws_error,
    resolve_stack,
)

# Long enough to walk a queue of a few thousand messages before the first reappear; short,
# so a verify killed with SIGKILL (no chance to release) hides them for seconds, not minutes.
READ_VISIBILITY_TIMEOUT_S = 15
MAX_DETAIL_LINES = 20


class ExitCode(IntEnum):
    OK = 0  # every event applied once and in order, or parked, or replayed
    MISMATCH = 1  # something lost, duplicated, reordered, or parked/replayed unexpectedly
    CANNOT_CHECK = 2  # bad arguments, stack file or manifest; AWS unreachable or denied
    NOT_DRAINED = 3  # poison messages in flight, or still changing when --timeout ran out
    INTERRUPTED = 130  # SIGINT (SIGTERM: 143); poison messages were made visible again


EXIT_CODES = """exit status:
  0    every event applied once and in order per key, parked with its payload, or replayed
  1    events lost, duplicated by the pipeline, out of order, or parked/replayed unexpectedly
  2    cannot check: bad arguments, stack file or manifest (missing, modified, incomplete,
       empty, for another sink table), or AWS unreachable, denied or without credentials
  3    not drained: poison messages in flight (held by another reader, such as replay.py),
       or the sink was still changing when --timeout ran out; run verify again
  130  interrupted by Ctrl-C (143: SIGTERM); poison messages were made visible again
"""

# Kept for callers of the previous names.
EXIT_OK = ExitCode.OK
EXIT_MISMATCH = ExitCode.MISMATCH
EXIT_UNUSABLE = ExitCode.CANNOT_CHECK


class CannotCheck(Exception):
    """verify cannot give a verdict: one line says why."""


def chain(previous_hex: str, payload: str) -> str:
    """One link of the per-key hash chain, recomputed here independently of the handler."""
    return hashlib.sha256(bytes.fromhex(previous_hex) + payload.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class SentEvent:
    source: str
    key: str
    n: int
    payload: str
    poison: bool  # meant for the poison queue, whichever way it fails
    poison_kind: PoisonKind = PoisonKind.HANDLER

    @property
    def breaks_contract(self) -> bool:
        return self.poison and self.poison_kind is PoisonKind.CONTRACT


@dataclass(frozen=True)
class SinkRow:
    key: str
    last_n: int
    count: int
    h: str
    producer_duplicates: int = 0
    replayed: tuple[tuple[int, str], ...] = ()  # (n, sha256 of the payload) a replay applied


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
    position: str | None = None  # "sequence number:sub-sequence number" on the stream
    attempts: int | None = None  # the message's `attempts`

    @property
    def as_contract_violation(self) -> bool:
        """Parked at once for breaking the payload's contract, as the processor does."""
        return self.error_type == CONTRACT_VIOLATION_ERROR and self.attempts == 1


def sent_events(manifest: Manifest) -> list[SentEvent]:
    """The manifest's events (ManifestError for a poison kind this verify does not know)."""
    return [
        SentEvent(e["source"], e["key"], e["n"], e["payload"], e["poison"], _poison_kind(e))
        for e in manifest["events"]
    ]


def _poison_kind(event: dict) -> PoisonKind:
    value = event.get("poisonKind", PoisonKind.HANDLER.value)  # absent: load before contracts
    try:
        return PoisonKind(value)
    except ValueError:
        raise ManifestError(
            f"event {event['key']} n={event['n']}: unknown poisonKind {value!r}"
        ) from None


def load_manifest(path: Path) -> list[SentEvent]:
    """The events of a checked manifest (raises ManifestError)."""
    return sent_events(read_manifest(path))


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
    position = f"{message.get('sequenceNumber')}:{message.get('subSequenceNumber', 0)}"
    attempts = message.get("attempts")
    attempts = attempts if type(attempts) is int else None
    unread = ParkedEvent(
        message_id,
        source,
        message.get("partitionKey"),
        None,
        None,
        False,
        error_type,
        position=position,
        attempts=attempts,
    )
    if message.get("truncated"):
        return _with_problem(unread, "parked without payload (truncated)")
    try:
        event = _demo_event(message)
    except (KeyError, ValueError, TypeError, binascii.Error) as exc:
        return _with_problem(unread, f"payload unreadable: {type(exc).__name__}: {exc}")
    return ParkedEvent(
        message_id,
        source,
        event.key,
        event.n,
        event.payload,
        event.poison,
        error_type,
        position=position,
        attempts=attempts,
    )


def _demo_event(message: PoisonMessage) -> DemoEvent:
    """The demo event a poison message carries: Kinesis `data`, DynamoDB `NewImage`."""
    if message["source"] == "kinesis":
        return DemoEvent.from_body(json.loads(base64.b64decode(message["data"], validate=True)))
    image = message["dynamodb"]["NewImage"]
    return DemoEvent.from_image(
        {name: _deserializer.deserialize(value) for name, value in image.items()}
    )


def _with_problem(event: ParkedEvent, problem: str) -> ParkedEvent:
    return ParkedEvent(
        event.message_id,
        event.source,
        event.key,
        None,
        None,
        False,
        event.error_type,
        problem,
        event.position,
        event.attempts,
    )


@dataclass
class Report:
    events: int = 0
    keys: int = 0
    applied_in_order: int = 0
    parked: int = 0
    replayed: int = 0  # applied by a replay, out of the chain's order
    lost: int = 0
    duplicated: int = 0  # applied (or parked) more than once by the pipeline
    producer_duplicates: int = 0  # sent twice by the producer, skipped: not a failure
    # One record's poison message on the queue twice: SQS sends are at least once (a send
    # retried after its answer was lost, or a crash between the send and the checkpoint).
    # Not a failure: nothing was applied twice, and replay.py applies the record once.
    parked_again: int = 0
    contract_violations: int = 0  # of `parked`: parked at once for breaking the contract
    out_of_order: int = 0  # keys
    unexpectedly_parked: int = 0
    unexpectedly_replayed: int = 0
    unknown_keys: int = 0  # this run's keys in the sink or on the queue, not in the manifest
    settled_keys: int = 0  # keys whose state is final and right
    in_flight: int = 0  # poison messages held by another reader while this one looked
    still_changing: bool = False  # the deadline came while the sink was still moving
    details: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (
            self.lost
            or self.duplicated
            or self.out_of_order
            or self.unexpectedly_parked
            or self.unexpectedly_replayed
            or self.unknown_keys
        )

    @property
    def drained(self) -> bool:
        """Whether a failure can be trusted: nothing in flight, nothing still moving."""
        return not self.in_flight and not self.still_changing

    def exit_code(self) -> ExitCode:
        if self.ok:
            return ExitCode.OK
        return ExitCode.MISMATCH if self.drained else ExitCode.NOT_DRAINED

    def summary(self) -> str:
        # Not drained, nothing missing can be called lost yet.
        lost = "lost" if self.ok or self.drained else "not accounted for yet"
        line = (
            f"verified {self.events} events over {self.keys} keys: "
            f"{self.applied_in_order} applied in order, {self.parked} parked, "
            f"{self.lost} {lost}, {self.duplicated} duplicated, {self.out_of_order} out of order"
        )
        if self.unexpectedly_parked:
            line += f", {self.unexpectedly_parked} unexpectedly parked"
        if self.unexpectedly_replayed:
            line += f", {self.unexpectedly_replayed} unexpectedly replayed"
        if self.unknown_keys:
            line += f", {self.unknown_keys} keys not in the manifest"
        line += (
            f"; {self.replayed} applied by replay, "
            f"{self.producer_duplicates} producer duplicates skipped"
        )
        if self.parked_again:
            line += f", {self.parked_again} poison messages sent twice"
        if self.contract_violations:
            line += f"; {self.contract_violations} of the parked broke the event's contract"

        if self.ok or self.drained:
            return line
        reasons = []
        if self.in_flight:
            reasons.append(
                f"{self.in_flight} poison message(s) in flight (held by another reader, "
                "e.g. replay.py or a verify that was killed)"
            )
        if self.still_changing:
            reasons.append("the sink was still changing when the timeout ran out")
        return f"not drained: {' and '.join(reasons)}; verify again later. So far {line}"


def assess(
    events: Sequence[SentEvent],
    sink: dict[str, SinkRow],
    parked: Iterable[ParkedEvent],
    run_id: str | None = None,
) -> Report:
    """Compare what was sent with the sink rows and the parked events (no I/O).

    With `run_id`, sink rows and parked events of this run's keys (see
    streamline.tools.manifest.belongs_to_run) that the manifest does not list fail the check.
    """
    by_key: dict[str, list[SentEvent]] = defaultdict(list)
    for event in events:
        by_key[event.key].append(event)
    report = Report(events=len(events), keys=len(by_key))

    def of_this_run(key: str | None) -> bool:
        return key is not None and run_id is not None and belongs_to_run(key, run_id)

    parked_by_key = _parked_by_key(parked, by_key, of_this_run, report)
    for key in sorted(k for k in sink if k not in by_key and of_this_run(k)):
        report.unknown_keys += 1
        report.details.append(f"in the sink but not in the manifest: {key}")
    for key in sorted(by_key):
        _assess_key(key, by_key[key], sink.get(key), parked_by_key.get(key, []), report)
    return report


def _parked_by_key(
    parked: Iterable[ParkedEvent],
    sent_keys: Container[str],
    of_this_run: Callable[[str | None], bool],
    report: Report,
) -> dict[str, list[ParkedEvent]]:
    """The parked events of the manifest's keys, by key; the rest are reported here: an
    unreadable message (unless it is another run's) and this run's keys the manifest lacks."""
    parked_by_key: dict[str, list[ParkedEvent]] = defaultdict(list)
    for event in parked:
        if event.problem:
            # Which event this is cannot be told, so it is matched to nothing; if it belongs to
            # this run its event shows up as lost as well.
            if event.key is None or event.key in sent_keys or of_this_run(event.key):
                report.unexpectedly_parked += 1
                report.details.append(f"parked message {event.message_id}: {event.problem}")
            continue
        if event.key in sent_keys:
            parked_by_key[event.key].append(event)
        elif of_this_run(event.key):
            report.unknown_keys += 1
            report.details.append(
                f"parked but not in the manifest: {event.key} n={event.n} "
                f"(message {event.message_id})"
            )
    return parked_by_key


def _assess_key(
    key: str,
    sent_unsorted: list[SentEvent],
    row: SinkRow | None,
    parked: list[ParkedEvent],
    report: Report,
) -> None:
    """One key: its replays, its parked events, then its sink row against the hash chain of
    the events left to the pipeline."""
    sent = sorted(sent_unsorted, key=lambda e: e.n)
    sent_by_n = {e.n: e for e in sent}
    row = row or SinkRow(key, 0, 0, "")
    report.producer_duplicates += row.producer_duplicates
    replayed_ns = _assess_replayed(key, row, sent_by_n, report)
    parked_at = _assess_parked(key, parked, sent_by_n, replayed_ns, report)
    missing_parks = [
        e.n for e in sent if e.poison and e.n not in parked_at and e.n not in replayed_ns
    ]
    if missing_parks:
        report.lost += len(missing_parks)
        report.details.append(
            f"poison neither on the poison queue nor replayed: {key} n={missing_parks}"
        )
    applied = [e for e in sent if not e.poison and e.n not in parked_at and e.n not in replayed_ns]
    if _assess_sink_row(key, row, applied, report) and not missing_parks:
        report.settled_keys += 1


def _assess_replayed(
    key: str, row: SinkRow, sent_by_n: dict[int, SentEvent], report: Report
) -> set[int]:
    """The n's a replay applied as they were sent; any other replay is reported."""
    replayed_ns: set[int] = set()
    for n, digest in row.replayed:
        original = sent_by_n.get(n)
        if original is None:
            report.unexpectedly_replayed += 1
            report.details.append(f"replayed but never sent: {key} n={n}")
        elif digest != payload_sha256(original.payload):
            report.unexpectedly_replayed += 1
            report.details.append(f"replayed with another payload: {key} n={n}")
        else:
            replayed_ns.add(n)
            report.replayed += 1
    return replayed_ns


def _assess_parked(
    key: str,
    parked: list[ParkedEvent],
    sent_by_n: dict[int, SentEvent],
    replayed_ns: set[int],
    report: Report,
) -> dict[int, str | None]:
    """The n's parked as sent, each with its first parked copy's stream position; anything
    else on the poison queue is reported."""
    parked_at: dict[int, str | None] = {}
    for event in parked:
        original = sent_by_n.get(event.n)
        where = f"{key} n={event.n} (message {event.message_id}, {event.error_type})"
        if event.n in parked_at:
            if event.position != parked_at[event.n]:
                # The stream holds the event twice (the producer's retry): not the pipeline's.
                report.producer_duplicates += 1
            else:
                report.parked_again += 1
                report.details.append(f"poison message sent twice (not a failure): {where}")
        elif original is None:
            report.unexpectedly_parked += 1
            report.details.append(f"parked but never sent: {where}")
        elif event.payload != original.payload:
            report.unexpectedly_parked += 1
            report.details.append(f"parked with another payload: {where}")
        elif event.n in replayed_ns:
            # Applied by a replay that did not delete its message (yet): a second replay
            # finds it applied and deletes it.
            parked_at[event.n] = event.position
            report.details.append(f"applied by a replay, still on the poison queue: {where}")
        elif not original.poison:
            parked_at[event.n] = event.position
            report.unexpectedly_parked += 1
            report.details.append(f"parked but not poison: {where}")
        elif original.breaks_contract != event.as_contract_violation:
            parked_at[event.n] = event.position
            report.unexpectedly_parked += 1
            if original.breaks_contract:
                report.details.append(
                    f"breaks the event's contract but was parked after {event.attempts} "
                    f"attempt(s), not at once as {CONTRACT_VIOLATION_ERROR}: {where}"
                )
            else:
                report.details.append(
                    f"keeps the event's contract but was parked as if not: {where}"
                )
        else:
            parked_at[event.n] = event.position
            report.parked += 1
            report.contract_violations += original.breaks_contract
    return parked_at


def _assess_sink_row(key: str, row: SinkRow, applied: list[SentEvent], report: Report) -> bool:
    """The key's sink row against the chain of the events it should have applied, in order:
    whether it is exactly right."""
    prefix_h = [""]
    for event in applied:
        prefix_h.append(chain(prefix_h[-1], event.payload))
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
        return False
    if row.count > expected:
        report.duplicated += row.count - expected
        report.details.append(f"duplicated: {key} has {row.count} of {expected} events")
        return False
    if row.h != prefix_h[-1] or (expected and row.last_n != expected_last_n):
        report.out_of_order += 1
        report.details.append(
            f"out of order: {key} has all {expected} events (last_n={row.last_n}, "
            f"expected {expected_last_n}) but h={row.h[:12]}… instead of {prefix_h[-1][:12]}…"
        )
        return False
    report.applied_in_order += row.count
    return True


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
                producer_duplicates=int(item.get("producer_duplicates", {}).get("N", "0")),
                replayed=tuple(sorted(_replay_entries(item.get("replayed", {}).get("SS", [])))),
            )
    return rows


def _replay_entries(entries: Iterable[str]) -> Iterator[tuple[int, str]]:
    for entry in entries:
        n, _, digest = entry.partition(":")
        with contextlib.suppress(ValueError):
            yield int(n), digest


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """SIGINT/SIGTERM wait until the block is done: a receive and the bookkeeping of what it
    hid, or the release, is never cut in half (they are delivered right after)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def peek_queue(client, queue_url: str) -> list[dict]:
    """Every message on the queue, left on it: received while hidden, then made visible.

    SQS has no peek; receiving with visibility 0 would hand back the same first messages
    over and over, so the messages are hidden while the queue is walked and released after,
    also when the walk is interrupted. A receive that brings only messages already seen
    means the walk came round (they reappeared): it ends there.
    """
    messages: dict[str, dict] = {}
    handles: list[str] = []
    try:
        while True:
            with signals_deferred():
                batch = receive(
                    client, queue_url, READ_VISIBILITY_TIMEOUT_S, AttributeNames=["All"]
                )
                handles.extend(message["ReceiptHandle"] for message in batch)
            new = [m for m in batch if m["MessageId"] not in messages]
            if not new:
                break
            for message in new:
                messages[message["MessageId"]] = message
    finally:
        with signals_deferred():
            release(client, queue_url, handles)
    return list(messages.values())


def release(client, queue_url: str, receipt_handles: Sequence[str]) -> None:
    """Make received messages visible again right away."""
    for entries in visibility_batches(receipt_handles, 0):
        client.change_message_visibility_batch(QueueUrl=queue_url, Entries=entries)


def read_parked(client, queue_url: str) -> list[ParkedEvent]:
    return [parked_event(m["MessageId"], m["Body"]) for m in peek_queue(client, queue_url)]


State = tuple[dict[str, SinkRow], list[ParkedEvent], int]


def wait_for_outcome(
    events: Sequence[SentEvent],
    read_state: Callable[[], State],
    timeout_s: float,
    settle_s: float,
    poll_s: float,
    progress: Progress | None = None,
    run_id: str | None = None,
) -> Report:
    """Assess until every key is right, the state stops changing for `settle_s` with nothing
    in flight, or the timeout (0: assess once)."""
    started = time.monotonic()
    deadline = started + timeout_s
    last_state = None
    last_change = started
    changed_since_start = False
    while True:
        sink, parked, held = read_state()
        report = assess(events, sink, parked, run_id)
        report.in_flight = held
        done = report.applied_in_order + report.parked + report.replayed
        if progress is not None:
            progress.update(done, note=f"{report.settled_keys}/{report.keys} keys settled")
        if report.ok and report.settled_keys == report.keys:
            return report
        state = (tuple(sorted(sink.items())), tuple(sorted(p.message_id for p in parked)))
        now = time.monotonic()
        if state != last_state:
            changed_since_start = last_state is not None
            last_state, last_change = state, now
        elif held:
            last_change = now  # messages in flight: not settled, whatever the sink says
        elif now - last_change >= settle_s:
            return report
        if now >= deadline:
            report.still_changing = changed_since_start and now - last_change < settle_s
            return report
        time.sleep(poll_s)


# --- command line --------------------------------------------------------------------------


non_negative_seconds = number(0)
positive_seconds = number(0, above=True)  # a poll interval of 0 would spin


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        description="Verify the demo pipeline against load.py's manifest: every event applied\n"
        "exactly once and in order per key, parked with its payload, or applied by a replay.\n"
        "Producer duplicates (an event the producer wrote twice) are reported, not failed.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--manifest",
        type=text,
        default="build/manifest.json",
        help="load.py's manifest (default build/manifest.json)",
    )
    parser.add_argument(
        "--timeout",
        type=non_negative_seconds,
        default=120,
        help="seconds to wait for the pipeline to drain (default 120)",
    )
    parser.add_argument(
        "--settle",
        type=non_negative_seconds,
        default=15,
        help="give up waiting once nothing changed for this many seconds (default 15)",
    )
    parser.add_argument(
        "--poll", type=positive_seconds, default=1.0, help="seconds between reads (default 1)"
    )
    parser.add_argument("--no-wait", action="store_true", help="assess the current state once")
    add_stack_arguments(parser, "sink_table_name", "poison_queue_url", "on_failure_queue_url")
    return parser


def main(argv: list[str] | None = None, session: Any = None) -> int:
    args = build_parser().parse_args(argv)  # bad arguments: one line, exit 2
    with interrupts_raised():
        try:
            return _verify(args, session)
        except CannotCheck as exc:
            print(f"verify: cannot check: {exc}", file=sys.stderr)
            return ExitCode.CANNOT_CHECK
        except (Interrupted, KeyboardInterrupt) as exc:
            name, status = interruption(exc)  # 130 (ExitCode.INTERRUPTED) for SIGINT
            print(f"verify: interrupted ({name}); poison messages left visible", file=sys.stderr)
            return status


def _verify(args: argparse.Namespace, session: Any) -> int:
    keys = ("sink_table_name", "poison_queue_url", "on_failure_queue_url")
    try:
        stack = resolve_stack(args, *keys)
        manifest = read_manifest(Path(args.manifest))
        events = sent_events(manifest)
    except (StackFileError, ManifestError) as exc:
        raise CannotCheck(str(exc)) from exc
    if not stack["sink_table_name"] or not stack["poison_queue_url"]:
        raise CannotCheck(
            "need the sink table and poison queue: --stack FILE, or --sink-table-name and "
            "--poison-queue-url"
        )
    loaded_into = manifest["stack"].get("sink_table_name")
    if loaded_into and loaded_into != stack["sink_table_name"]:
        raise CannotCheck(
            f"manifest {args.manifest} is for sink table {loaded_into}, not "
            f"{stack['sink_table_name']}: pass the stack that load.py used"
        )
    try:
        if session is None:
            import boto3

            session = boto3.Session()
        dynamodb = session.client("dynamodb")
        sqs = session.client("sqs")
    except AWS_ERRORS as exc:
        raise CannotCheck(describe_aws_error(exc)) from exc
    _check_access(dynamodb, sqs, stack)

    def read_state() -> State:
        # In flight is read first: during the walk, this verify's own reads hide messages (it
        # holds none between walks, so what is hidden then is someone else's).
        held = in_flight(sqs, stack["poison_queue_url"])
        return (
            read_sink(dynamodb, stack["sink_table_name"]),
            read_parked(sqs, stack["poison_queue_url"]),
            held,
        )

    progress = Progress("verify", len(events))
    try:
        if args.no_wait:
            report = wait_for_outcome(events, read_state, 0, 0, 0, run_id=manifest["runId"])
        else:
            report = wait_for_outcome(
                events,
                read_state,
                args.timeout,
                args.settle,
                args.poll,
                progress,
                run_id=manifest["runId"],
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
    except AWS_ERRORS as exc:
        raise CannotCheck(describe_aws_error(exc, "reading the pipeline's state")) from exc
    for line in report.details[:MAX_DETAIL_LINES]:
        print(f"  {line}")
    if len(report.details) > MAX_DETAIL_LINES:
        print(f"  … and {len(report.details) - MAX_DETAIL_LINES} more")
    return report.exit_code()


def _check_access(dynamodb, sqs, stack: dict[str, str | None]) -> None:
    """Every resource named is there and readable, before anything is judged by it."""
    checks = [
        (
            f"sink table {stack['sink_table_name']}",
            lambda: dynamodb.describe_table(TableName=stack["sink_table_name"]),
        ),
        (
            f"poison queue {stack['poison_queue_url']}",
            lambda: in_flight(sqs, stack["poison_queue_url"]),
        ),
    ]
    if stack["on_failure_queue_url"]:
        checks.append(
            (
                f"on-failure queue {stack['on_failure_queue_url']}",
                lambda: in_flight(sqs, stack["on_failure_queue_url"]),
            )
        )
    for what, check in checks:
        try:
            check()
        except AWS_ERRORS as exc:
            raise CannotCheck(describe_aws_error(exc, what)) from exc


if __name__ == "__main__":
    sys.exit(main())
