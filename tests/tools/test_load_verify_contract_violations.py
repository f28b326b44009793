"""load.py's contract violations (--poison-kind contract|mixed) and what verify.py expects of
them: on the poison queue as InvalidPayloadError, parked on the first attempt."""

from __future__ import annotations

import json

import pytest
from queue_messages import dynamodb_poison, kinesis_poison

from processor.contracts import PoisonKind
from processor.records import Source
from streamline.tools.load import build_parser, generate_events, manifest_for
from streamline.tools.manifest import ManifestError, read_manifest, write_manifest
from streamline.tools.verify import (
    ParkedEvent,
    SentEvent,
    SinkRow,
    assess,
    chain,
    parked_event,
    sent_events,
)

SOURCES = [Source.KINESIS, Source.DYNAMODB]
KINESIS_ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/s"
DYNAMODB_STREAM_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/x"


# --- load ---------------------------------------------------------------------------------


def test_contract_poison_sends_n_as_a_string_and_no_poison_marker():
    events = generate_events(200, 4, SOURCES, poison_fraction=0.2, poison_kind="contract")

    poison = [e for e in events if e.poison]
    assert poison and all(e.breaks_contract for e in poison)
    kinesis = next(e for e in poison if e.source is Source.KINESIS)
    dynamodb = next(e for e in poison if e.source is Source.DYNAMODB)
    assert json.loads(kinesis.data()) == {
        "key": kinesis.key,
        "n": str(kinesis.n),
        "payload": kinesis.payload,
    }
    assert dynamodb.item()["n"] == {"S": str(dynamodb.n)}
    assert "poison" not in dynamodb.item()


def test_the_kind_changes_how_poison_fails_not_which_events_or_payloads():
    def picks(kind: str) -> list[tuple[str, int, str, bool]]:
        events = generate_events(300, 6, SOURCES, poison_fraction=0.1, seed=7, poison_kind=kind)
        return [(e.key, e.n, e.payload, e.poison) for e in events[:150]]

    handler = picks("handler")
    assert handler == picks("contract")
    # mixed draws once more per poison event, so later payloads differ: compare up to the first
    first_poison = next(i for i, e in enumerate(handler) if e[3])
    assert handler[: first_poison + 1] == picks("mixed")[: first_poison + 1]


def test_mixed_poison_fails_both_ways():
    events = generate_events(2000, 10, SOURCES, poison_fraction=0.2, poison_kind="mixed")

    kinds = {e.poison_kind for e in events if e.poison}
    assert kinds == {PoisonKind.HANDLER, PoisonKind.CONTRACT}
    assert not any(e.breaks_contract for e in events if not e.poison)


def test_an_unknown_poison_kind_is_refused():
    with pytest.raises(ValueError, match="poison kind"):
        generate_events(10, 2, SOURCES, poison_kind="sometimes")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--poison-kind", "sometimes"])


def test_the_manifest_marks_contract_violations_and_verify_reads_them_back(tmp_path):
    events = generate_events(100, 4, SOURCES, poison_fraction=0.3, poison_kind="mixed")
    meta = {"runId": "r1", "createdAt": "now", "seed": 1, "aggregated": False, "stack": {}}
    path = tmp_path / "manifest.json"

    write_manifest(path, manifest_for(events, {}, meta, complete=True))
    rows = read_manifest(path)["events"]
    sent = sent_events(read_manifest(path))

    assert [row.get("poisonKind") for row in rows] == [
        "contract" if e.breaks_contract else None for e in events
    ]
    assert [(s.key, s.n, s.poison, s.breaks_contract) for s in sent] == [
        (e.key, e.n, e.poison, e.breaks_contract) for e in events
    ]


def test_a_manifest_without_poison_kinds_reads_as_handler_poison(tmp_path):
    events = generate_events(20, 2, SOURCES, poison_fraction=0.5)
    meta = {"runId": "r1", "createdAt": "now", "seed": 1, "aggregated": False, "stack": {}}
    manifest = manifest_for(events, {}, meta, complete=True)

    assert all("poisonKind" not in row for row in manifest["events"])
    assert not any(s.breaks_contract for s in sent_events(manifest))


def test_an_unknown_poison_kind_in_the_manifest_cannot_be_checked():
    manifest = {"events": [{"source": "kinesis", "key": "k", "n": 1, "payload": "p"}]}
    manifest["events"][0] |= {"poison": True, "poisonKind": "sometimes"}

    with pytest.raises(ManifestError, match="poisonKind"):
        sent_events(manifest)  # type: ignore[arg-type]


# --- verify -------------------------------------------------------------------------------

EVENTS = [
    SentEvent("kinesis", "k-1", 1, "p1", False),
    SentEvent("kinesis", "k-1", 2, "p2", True, PoisonKind.CONTRACT),
    SentEvent("kinesis", "k-1", 3, "p3", True),
    SentEvent("kinesis", "k-1", 4, "p4", False),
]
SINK = {"k-1": SinkRow("k-1", 4, 2, chain(chain("", "p1"), "p4"))}


def parked(n: int, error_type: str, attempts: int) -> ParkedEvent:
    return ParkedEvent(f"m-{n}", "kinesis", "k-1", n, f"p{n}", False, error_type, attempts=attempts)


def test_a_contract_violation_parked_at_once_passes_and_is_counted():
    report = assess(
        EVENTS,
        SINK,
        [parked(2, "InvalidPayloadError", 1), parked(3, "PoisonEventError", 3)],
    )

    assert report.ok, report.details
    assert (report.parked, report.contract_violations) == (2, 1)
    assert report.summary().endswith("; 1 of the parked broke the event's contract")
    assert "2 applied in order, 2 parked, 0 lost, 0 duplicated, 0 out of order" in (
        report.summary()
    )


@pytest.mark.parametrize(
    "parked_events, detail",
    [
        pytest.param(
            [parked(2, "PoisonEventError", 3), parked(3, "PoisonEventError", 3)],
            "breaks the event's contract but was parked after 3 attempt(s)",
            id="violation-retried",
        ),
        pytest.param(
            [parked(2, "InvalidPayloadError", 2), parked(3, "PoisonEventError", 3)],
            "not at once as InvalidPayloadError",
            id="violation-parked-late",
        ),
        pytest.param(
            [parked(2, "InvalidPayloadError", 1), parked(3, "InvalidPayloadError", 1)],
            "keeps the event's contract but was parked as if not",
            id="valid-event-refused-by-the-contract",
        ),
    ],
)
def test_a_contract_violation_parked_the_wrong_way_fails(parked_events, detail):
    report = assess(EVENTS, SINK, parked_events)

    assert not report.ok
    assert report.unexpectedly_parked == 1
    assert any(detail in line for line in report.details), report.details


def test_a_contract_violation_neither_parked_nor_replayed_is_lost():
    report = assess(EVENTS, SINK, [parked(3, "PoisonEventError", 3)])

    assert report.lost == 1
    assert any("n=[2]" in line for line in report.details)


def test_poison_messages_of_contract_violations_read_back_with_their_attempts():
    body = {"key": "k-1", "n": "2", "payload": "p2"}
    error = {"type": "InvalidPayloadError", "message": "...", "traceback": "..."}
    kinesis = parked_event(
        "a", json.dumps(kinesis_poison(KINESIS_ARN, body, "42", error=error, attempts=1))
    )
    stream_record = {
        "Keys": {"pk": {"S": "d-1"}},
        "NewImage": {"pk": {"S": "d-1"}, "n": {"S": "5"}, "payload": {"S": "q5"}},
    }
    dynamodb = parked_event(
        "b", json.dumps(dynamodb_poison(DYNAMODB_STREAM_ARN, stream_record, attempts=1))
    )

    assert (kinesis.key, kinesis.n, kinesis.payload, kinesis.attempts) == ("k-1", 2, "p2", 1)
    assert kinesis.as_contract_violation
    assert (dynamodb.key, dynamodb.n, dynamodb.payload, dynamodb.attempts) == ("d-1", 5, "q5", 1)
    assert not dynamodb.as_contract_violation  # the builder parks it as PoisonEventError
