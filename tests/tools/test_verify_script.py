"""scripts/verify.py: every event applied once and in order per key, or parked with its
payload; loss, duplicates, reorders and unexpected parks make it fail."""

from __future__ import annotations

import json
import time

import pytest
from boto3.dynamodb.types import TypeSerializer
from queue_messages import dynamodb_poison, kinesis_poison

from streamline.tools import manifest, verify
from streamline.tools.verify import ParkedEvent, SentEvent, SinkRow, assess, chain, parked_event

# Given: two keys; k-1 has a poison event at n=3.
EVENTS = [
    SentEvent("kinesis", "k-1", 1, "p1", False),
    SentEvent("kinesis", "k-1", 2, "p2", False),
    SentEvent("kinesis", "k-1", 3, "p3", True),
    SentEvent("kinesis", "k-1", 4, "p4", False),
    SentEvent("dynamodb", "d-1", 1, "q1", False),
    SentEvent("dynamodb", "d-1", 2, "q2", False),
]


def row(key: str, payloads: list[str], last_n: int) -> SinkRow:
    h = ""
    for payload in payloads:
        h = chain(h, payload)
    return SinkRow(key, last_n, len(payloads), h)


def parked(key: str, n: int, payload: str | None, poison: bool = True) -> ParkedEvent:
    return ParkedEvent(f"m-{key}-{n}", "kinesis", key, n, payload, poison, "PoisonEventError")


GOOD_SINK = {"k-1": row("k-1", ["p1", "p2", "p4"], 4), "d-1": row("d-1", ["q1", "q2"], 2)}
GOOD_PARKED = [parked("k-1", 3, "p3")]


def test_chain_is_sha256_of_the_previous_hash_bytes_and_the_payload():
    import hashlib

    first = chain("", "a")
    assert first == hashlib.sha256(b"a").hexdigest()
    assert chain(first, "b") == hashlib.sha256(bytes.fromhex(first) + b"b").hexdigest()


def test_all_applied_in_order_and_the_poison_parked_passes():
    report = assess(EVENTS, GOOD_SINK, GOOD_PARKED)

    assert report.ok
    assert report.summary() == (
        "verified 6 events over 2 keys: 5 applied in order, 1 parked, "
        "0 lost, 0 duplicated, 0 out of order; 0 applied by replay, "
        "0 producer duplicates skipped"
    )
    assert report.settled_keys == 2


@pytest.mark.parametrize(
    ("sink", "parked_events", "field", "expected"),
    [
        pytest.param(
            {**GOOD_SINK, "k-1": row("k-1", ["p1", "p2"], 2)},
            GOOD_PARKED,
            "lost",
            1,
            id="last-event-missing",
        ),
        pytest.param(
            {**GOOD_SINK, "k-1": row("k-1", ["p1", "p4"], 4)},
            GOOD_PARKED,
            "lost",
            1,
            id="middle-event-missing",
        ),
        pytest.param({"k-1": GOOD_SINK["k-1"]}, GOOD_PARKED, "lost", 2, id="key-never-applied"),
        pytest.param(GOOD_SINK, [], "lost", 1, id="poison-not-parked"),
        pytest.param(
            {**GOOD_SINK, "d-1": row("d-1", ["q1", "q2", "q2"], 2)},
            GOOD_PARKED,
            "duplicated",
            1,
            id="applied-twice",
        ),
        pytest.param(
            {**GOOD_SINK, "d-1": row("d-1", ["q2", "q1"], 1)},
            GOOD_PARKED,
            "out_of_order",
            1,
            id="swapped",
        ),
        pytest.param(
            {**GOOD_SINK, "d-1": row("d-1", ["q1", "q2"], 1)},
            GOOD_PARKED,
            "out_of_order",
            1,
            id="last-n-behind",
        ),
        pytest.param(
            {**GOOD_SINK, "k-1": row("k-1", ["p1", "p4"], 4)},
            GOOD_PARKED + [parked("k-1", 2, "p2", poison=False)],
            "unexpectedly_parked",
            1,
            id="healthy-event-parked",
        ),
        pytest.param(
            GOOD_SINK,
            [parked("k-1", 3, None)],
            "unexpectedly_parked",
            1,
            id="parked-without-payload",
        ),
        pytest.param(
            GOOD_SINK,
            [parked("k-1", 3, "other")],
            "unexpectedly_parked",
            1,
            id="parked-with-another-payload",
        ),
    ],
)
def test_a_wrong_outcome_fails(sink, parked_events, field, expected):
    report = assess(EVENTS, sink, parked_events)

    assert getattr(report, field) == expected
    assert not report.ok
    assert report.details


def test_a_prefix_of_the_chain_counts_as_applied_in_order_and_the_rest_as_lost():
    report = assess(EVENTS, {**GOOD_SINK, "k-1": row("k-1", ["p1"], 1)}, GOOD_PARKED)

    assert (report.applied_in_order, report.lost) == (3, 2)
    assert "the first 1 applied in order" in report.details[0]


def test_keys_of_other_runs_are_ignored():
    sink = {**GOOD_SINK, "k-9": row("k-9", ["x"], 1)}

    assert assess(EVENTS, sink, GOOD_PARKED + [parked("k-9", 1, "x")]).ok


def replayed(row_: SinkRow, *entries: tuple[int, str]) -> SinkRow:
    """The row after a replay applied these (n, payload)s."""
    digests = tuple((n, manifest.payload_sha256(payload)) for n, payload in entries)
    return SinkRow(row_.key, row_.last_n, row_.count, row_.h, replayed=digests)


def test_a_replayed_poison_event_counts_as_applied():
    sink = {**GOOD_SINK, "k-1": replayed(GOOD_SINK["k-1"], (3, "p3"))}

    report = assess(EVENTS, sink, [])

    assert report.ok and (report.replayed, report.parked, report.lost) == (1, 0, 0)
    assert report.settled_keys == 2


def test_a_replayed_event_still_on_the_queue_is_applied_once_not_parked():
    sink = {**GOOD_SINK, "k-1": replayed(GOOD_SINK["k-1"], (3, "p3"))}

    report = assess(EVENTS, sink, GOOD_PARKED)

    assert report.ok and (report.replayed, report.parked, report.duplicated) == (1, 0, 0)
    assert "applied by a replay, still on the poison queue" in report.details[0]


def test_a_healthy_event_applied_by_a_replay_instead_of_in_order_counts_as_applied():
    k1 = row("k-1", ["p1", "p4"], 4)  # n=2 left behind by the ESM, replayed later
    sink = {**GOOD_SINK, "k-1": replayed(k1, (2, "p2"))}

    report = assess(EVENTS, sink, GOOD_PARKED)

    assert report.ok and (report.applied_in_order, report.replayed) == (4, 1)


@pytest.mark.parametrize(
    ("entries", "detail"),
    [
        pytest.param([(3, "other")], "replayed with another payload", id="another-payload"),
        pytest.param([(3, "p3"), (9, "p9")], "replayed but never sent", id="never-sent"),
    ],
)
def test_a_wrong_replay_fails(entries, detail):
    sink = {**GOOD_SINK, "k-1": replayed(GOOD_SINK["k-1"], *entries)}

    report = assess(EVENTS, sink, [])

    assert not report.ok and report.unexpectedly_replayed == 1
    assert any(detail in line for line in report.details)


def test_a_poison_message_sent_twice_is_counted_apart_and_does_not_fail():
    # SQS sends are at least once: the same record (one stream position) parked in two
    # messages applied nothing twice, and replay.py applies it once.
    report = assess(EVENTS, GOOD_SINK, GOOD_PARKED + [parked("k-1", 3, "p3")])

    assert report.ok and (report.parked_again, report.duplicated, report.parked) == (1, 0, 1)
    assert report.summary().endswith("0 producer duplicates skipped, 1 poison messages sent twice")


def test_producer_duplicates_are_reported_apart_and_do_not_fail():
    k1 = GOOD_SINK["k-1"]
    sink = {**GOOD_SINK, "k-1": SinkRow(k1.key, k1.last_n, k1.count, k1.h, producer_duplicates=2)}
    copies = [
        ParkedEvent("m1", "kinesis", "k-1", 3, "p3", True, "PoisonEventError", position="7:0"),
        ParkedEvent("m2", "kinesis", "k-1", 3, "p3", True, "PoisonEventError", position="8:0"),
    ]

    report = assess(EVENTS, sink, copies)

    assert report.ok and (report.producer_duplicates, report.duplicated) == (3, 0)
    assert report.summary().endswith("; 0 applied by replay, 3 producer duplicates skipped")


def test_rows_of_this_run_missing_from_the_manifest_fail():
    events = [SentEvent("kinesis", "k-r1-0001", 1, "a", False)]
    sink = {
        "k-r1-0001": row("k-r1-0001", ["a"], 1),
        "k-r1-0002": row("k-r1-0002", ["b"], 1),
        "k-r2-0002": row("k-r2-0002", ["b"], 1),  # another run's
    }

    report = assess(events, sink, [], run_id="r1")

    assert not report.ok and report.unknown_keys == 1
    assert report.details == ["in the sink but not in the manifest: k-r1-0002"]


KINESIS_ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/s"
DYNAMODB_STREAM_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/x"


def kinesis_poison_message(body: dict, **overrides) -> str:
    return json.dumps(kinesis_poison(KINESIS_ARN, body, "42", **overrides))


def dynamodb_poison_message(key: str, n: int, payload: str) -> str:
    image = {"pk": key, "n": n, "payload": payload, "poison": True}
    serializer = TypeSerializer()
    stream_record = {
        "Keys": {"pk": {"S": key}},
        "NewImage": {k: serializer.serialize(v) for k, v in image.items()},
    }
    return json.dumps(dynamodb_poison(DYNAMODB_STREAM_ARN, stream_record))


def test_poison_messages_of_both_sources_decode_to_their_event():
    kinesis = parked_event(
        "a", kinesis_poison_message({"key": "k-1", "n": 3, "payload": "p3", "poison": True})
    )
    dynamodb = parked_event("b", dynamodb_poison_message("d-1", 2, "q2"))
    truncated = parked_event("c", kinesis_poison_message({"key": "k-1"}, truncated=True))

    assert (kinesis.key, kinesis.n, kinesis.payload, kinesis.poison) == ("k-1", 3, "p3", True)
    assert (dynamodb.key, dynamodb.n, dynamodb.payload, dynamodb.poison) == ("d-1", 2, "q2", True)
    assert truncated.problem and truncated.payload is None


# --- against the emulator --------------------------------------------------------------------


def write_manifest(path, events: list[SentEvent], complete: bool = True, run_id="r1") -> None:
    """A sealed manifest of `events`, as load.py writes it."""
    rows = [
        {
            "source": e.source,
            "key": e.key,
            "n": e.n,
            "payload": e.payload,
            "payloadSha256": manifest.payload_sha256(e.payload),
            "poison": e.poison,
        }
        for e in events
    ]
    manifest.write_manifest(
        path,
        {
            "version": manifest.MANIFEST_VERSION,
            "runId": run_id,
            "createdAt": "2026-01-01T00:00:00+00:00",
            "complete": complete,
            "seed": 1,
            "aggregated": False,
            "stack": {},
            "eventCount": len(rows),
            "events": rows,
            "sha256": "",
        },
    )


def put_sink(dynamodb, table: str, rows: dict[str, SinkRow]) -> None:
    for r in rows.values():
        dynamodb.put_item(
            TableName=table,
            Item={
                "pk": {"S": r.key},
                "last_n": {"N": str(r.last_n)},
                "count": {"N": str(r.count)},
                "h": {"S": r.h},
            },
        )


@pytest.fixture
def hand_made_state(aws_session, demo_stack, tmp_path):
    """Given the manifest of EVENTS and the poison message of k-1 n=3 on the queue."""
    manifest = tmp_path / "manifest.json"
    write_manifest(manifest, EVENTS)
    aws_session.client("sqs").send_message(
        QueueUrl=demo_stack["poison_queue_url"],
        MessageBody=kinesis_poison_message({"key": "k-1", "n": 3, "payload": "p3", "poison": True}),
    )
    return manifest


def run_verify(demo_stack, manifest, *extra: str) -> int:
    return verify.main(["--stack", demo_stack["path"], "--manifest", str(manifest), *extra])


@pytest.mark.integration
@pytest.mark.parametrize(
    ("sink", "exit_code", "phrase"),
    [
        pytest.param(GOOD_SINK, 0, "5 applied in order, 1 parked, 0 lost", id="correct"),
        pytest.param({**GOOD_SINK, "k-1": row("k-1", ["p1", "p4"], 4)}, 1, "1 lost", id="lost"),
        pytest.param(
            {**GOOD_SINK, "d-1": row("d-1", ["q1", "q1", "q2"], 2)},
            1,
            "1 duplicated",
            id="duplicated",
        ),
        pytest.param(
            {**GOOD_SINK, "k-1": row("k-1", ["p2", "p1", "p4"], 4)},
            1,
            "1 out of order",
            id="reordered",
        ),
    ],
)
def test_verify_reads_the_sink_and_the_poison_queue_and_exits_by_the_outcome(
    aws_session, demo_stack, hand_made_state, capsys, sink, exit_code, phrase
):
    put_sink(aws_session.client("dynamodb"), demo_stack["sink_table_name"], sink)

    code = run_verify(demo_stack, hand_made_state, "--no-wait")

    assert code == exit_code
    assert phrase in capsys.readouterr().out


@pytest.mark.integration
def test_reading_the_poison_queue_leaves_the_messages_on_it(
    aws_session, demo_stack, hand_made_state
):
    put_sink(aws_session.client("dynamodb"), demo_stack["sink_table_name"], GOOD_SINK)
    sqs = aws_session.client("sqs")
    for n in range(25):  # more than one receive's worth
        sqs.send_message(QueueUrl=demo_stack["poison_queue_url"], MessageBody=f"noise {n}")

    assert run_verify(demo_stack, hand_made_state, "--no-wait") == 1  # noise is unreadable
    visible = verify.peek_queue(sqs, demo_stack["poison_queue_url"])

    assert len(visible) == 26


@pytest.mark.integration
def test_waiting_gives_up_once_the_state_stops_changing(
    aws_session, demo_stack, hand_made_state, capsys
):
    put_sink(
        aws_session.client("dynamodb"),
        demo_stack["sink_table_name"],
        {"k-1": row("k-1", ["p1"], 1)},
    )
    started = time.monotonic()

    code = run_verify(
        demo_stack, hand_made_state, "--settle", "1", "--poll", "0.2", "--timeout", "30"
    )

    assert code == 1
    assert time.monotonic() - started < 10
    assert "4 lost" in capsys.readouterr().out


@pytest.mark.integration
def test_an_incomplete_manifest_is_refused(demo_stack, tmp_path):
    path = tmp_path / "manifest.json"
    write_manifest(path, EVENTS, complete=False)

    assert run_verify(demo_stack, path, "--no-wait") == verify.ExitCode.CANNOT_CHECK


@pytest.mark.integration
def test_a_loss_points_at_batches_waiting_on_the_on_failure_queue(
    aws_session, demo_stack, hand_made_state, capsys
):
    put_sink(
        aws_session.client("dynamodb"),
        demo_stack["sink_table_name"],
        {**GOOD_SINK, "d-1": row("d-1", ["q1"], 1)},
    )
    aws_session.client("sqs").send_message(
        QueueUrl=demo_stack["on_failure_queue_url"], MessageBody=json.dumps({"version": "1.0"})
    )

    code = run_verify(demo_stack, hand_made_state, "--no-wait")

    assert code == 1
    assert "1 batch(es) on the on-failure queue" in capsys.readouterr().out
