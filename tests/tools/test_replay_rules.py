"""replay.py's rules as pure functions: what may be deleted, which records are a batch, when
a DynamoDB item may be written back, the exit code."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from esm.rules import lane_of
from processor.contracts import REPLAY_SUB_SEQUENCE_NUMBER
from processor.testing import DYNAMODB_ARN, dynamodb_record, kinesis_record, kpl_aggregate
from streamline.tools.replay import (
    REPLAYED_AT_ATTRIBUTE,
    ExitCode,
    Outcome,
    QueueKind,
    QueueMessage,
    Verdict,
    check_item,
    exit_code,
    judge,
    record_ids,
    rewrite_request,
    select_batch,
    trusts_applied_in_order,
)

# --- what may be deleted -------------------------------------------------------------------


def report(**lists: list[str]) -> dict[str, list[str]]:
    return {name: list(ids) for name, ids in lists.items()}


@pytest.mark.parametrize(
    ("ids", "answer", "trusted", "verdict"),
    [
        pytest.param(["1", "2"], report(applied=["1"], alreadyReplayed=["2"]), False,
                     Verdict.APPLIED, id="applied-and-already-replayed"),
        pytest.param(["1"], report(appliedInOrder=["1"]), True, Verdict.APPLIED,
                     id="in-order-trusted"),
        pytest.param(["1"], report(appliedInOrder=["1"]), False, Verdict.UNKNOWN,
                     id="in-order-untrusted"),
        pytest.param(["1", "2"], report(applied=["1"]), False, Verdict.UNKNOWN,
                     id="record-missing-from-report"),
        pytest.param(["1"], report(unknown=["1"]), True, Verdict.UNKNOWN, id="unknown"),
        pytest.param(["1", "2"], report(applied=["1"], failed=["2"]), True,
                     Verdict.NOT_APPLIED, id="failed"),
        pytest.param(["1", "2"], report(failed=["1"], blocked=["2"]), True,
                     Verdict.NOT_APPLIED, id="blocked"),
        pytest.param(["1"], report(unprocessed=["1"]), True, Verdict.NOT_APPLIED,
                     id="unprocessed"),
        pytest.param(["1"], report(unparseable=["1"]), True, Verdict.NOT_APPLIED,
                     id="unparseable"),
        pytest.param(["1"], report(applied=["1"], failed=["1"]), True, Verdict.NOT_APPLIED,
                     id="named-twice-counts-as-worst"),
        pytest.param([None], report(applied=[]), True, Verdict.UNKNOWN,
                     id="record-without-sequence-number"),
    ],
)  # fmt: skip
def test_a_message_goes_only_when_every_record_is_known_applied(ids, answer, trusted, verdict):
    judgement = judge(ids, answer, trust_applied_in_order=trusted, parked_is_accounted=False)

    assert judgement.verdict is verdict


def test_a_parked_unparseable_record_accounts_for_an_on_failure_batch_only():
    answer = report(applied=["1"], parked=["2"])

    on_failure = judge(["1", "2"], answer, trust_applied_in_order=True, parked_is_accounted=True)
    poison = judge(["2"], answer, trust_applied_in_order=False, parked_is_accounted=False)

    assert (on_failure.verdict, poison.verdict) == (Verdict.APPLIED, Verdict.NOT_APPLIED)


@pytest.mark.parametrize(
    ("trust_handler", "success", "verdict"),
    [
        pytest.param(False, True, Verdict.NO_REPORT, id="untrusted"),
        pytest.param(True, True, Verdict.APPLIED, id="trusted-success"),
        pytest.param(True, False, Verdict.NOT_APPLIED, id="trusted-batch-item-failures"),
    ],
)
def test_a_handler_without_a_report_confirms_nothing_unless_trusted(
    trust_handler, success, verdict
):
    judgement = judge(
        ["1"],
        None,
        trust_applied_in_order=True,
        parked_is_accounted=False,
        success_response=success,
        trust_handler=trust_handler,
    )

    assert judgement.verdict is verdict


def message(kind: QueueKind, body: dict) -> QueueMessage:
    return QueueMessage(kind, "url", "id", "handle", "kinesis", "arn", "s", "1", (), body)


@pytest.mark.parametrize(
    ("kind", "body", "trusted"),
    [
        pytest.param(QueueKind.POISON, {}, False, id="poison"),
        pytest.param(QueueKind.ON_FAILURE, {"responseContext": {"functionError": None}}, True,
                     id="function-returned"),
        pytest.param(QueueKind.ON_FAILURE, {"responseContext": {"functionError": "Unhandled"}},
                     False, id="function-error"),
        pytest.param(QueueKind.ON_FAILURE, {}, False, id="record-age-exceeded"),
    ],
)  # fmt: skip
def test_applied_in_order_is_trusted_only_after_the_function_returned(kind, body, trusted):
    assert trusts_applied_in_order(message(kind, body)) is trusted


def test_a_kpl_aggregate_stands_for_each_of_its_user_records():
    aggregate = kinesis_record("a", "77", kpl_aggregate([("a", b"1"), ("b", b"2"), ("a", b"3")]))
    one_user_record = kinesis_record("b", "78", b"2")
    one_user_record["kinesis"][REPLAY_SUB_SEQUENCE_NUMBER] = 4

    assert record_ids([aggregate, one_user_record]) == ["77", "77:1", "77:2", "78:4"]


@pytest.mark.parametrize(
    ("outcomes", "in_flight", "code"),
    [
        pytest.param({Outcome.DELETED: 3}, 0, ExitCode.OK, id="ok"),
        pytest.param({Outcome.DRY_RUN: 1, Outcome.FILTERED: 1}, 0, ExitCode.OK, id="dry-run"),
        pytest.param({Outcome.DELETED: 1}, 2, ExitCode.IN_FLIGHT, id="in-flight"),
        pytest.param({Outcome.UNCONFIRMED: 1}, 2, ExitCode.UNCONFIRMED, id="unconfirmed"),
        pytest.param({Outcome.REFUSED: 1, Outcome.UNCONFIRMED: 1}, 0, ExitCode.REFUSED,
                     id="refused"),
        pytest.param({Outcome.HELD: 1, Outcome.REFUSED: 1}, 0, ExitCode.FAILED, id="held"),
        pytest.param({Outcome.FAILED: 1, Outcome.REFUSED: 1}, 0, ExitCode.FAILED, id="failed"),
    ],
)  # fmt: skip
def test_exit_code_names_the_worst_outcome(outcomes, in_flight, code):
    assert exit_code(Counter(outcomes), in_flight, None) is code


# --- which records are the batch -----------------------------------------------------------


def keys_in_lanes(factor: int) -> list[str]:
    """One partition key per lane, for `factor` lanes."""
    keys: dict[int, str] = {}
    n = 0
    while len(keys) < factor:
        keys.setdefault(lane_of(f"key-{n}", factor), f"key-{n}")
        n += 1
    return [keys[lane] for lane in range(factor)]


def interleaved(keys: list[str], lane_counts: list[int]) -> list[dict]:
    """Records of one shard, round-robin over `keys`, `lane_counts[i]` records of keys[i]."""
    left = list(lane_counts)
    records = []
    seq = 100
    while any(left):
        for i, key in enumerate(keys):
            if left[i]:
                records.append(kinesis_record(key, seq, b"x"))
                left[i] -= 1
                seq += 1
    return records


def info(records: list[dict], size: int) -> dict:
    return {
        "startSequenceNumber": records[0]["kinesis"]["sequenceNumber"],
        "endSequenceNumber": records[-1]["kinesis"]["sequenceNumber"],
        "batchSize": size,
    }


def test_a_range_of_exactly_batch_size_records_is_the_batch_whatever_the_factor():
    records = interleaved(keys_in_lanes(2), [3, 3])

    selection = select_batch(records, info(records, 6), None)

    assert selection.exact and selection.records == records


def test_the_lane_of_the_first_record_picks_the_batch_out_of_the_range():
    records = interleaved(keys_in_lanes(4), [10, 24, 24, 24])
    lane_zero = [r for r in records if r["kinesis"]["partitionKey"] == keys_in_lanes(4)[0]]
    span = records[: records.index(lane_zero[-1]) + 1]

    selection = select_batch(span, info(lane_zero, 10), 4)

    assert selection.exact
    assert selection.records == lane_zero


@pytest.mark.parametrize(
    ("factor", "reason"),
    [
        pytest.param(None, "parallelization factor is unknown", id="factor-unknown"),
        pytest.param(1, "factor is 1", id="factor-one"),
        pytest.param(3, "lane", id="factor-wrong"),
    ],
)
def test_a_batch_that_cannot_be_told_apart_is_not_exact(factor, reason):
    # Two keys in different lanes of 2, but in one lane of 3 (the wrong factor).
    keys = next(
        [a, b]
        for a, b in (("key-0", f"key-{n}") for n in range(1, 100))
        if lane_of(a, 2) != lane_of(b, 2) and lane_of(a, 3) == lane_of(b, 3)
    )
    records = interleaved(keys, [10, 10])
    lane_zero = [r for r in records if r["kinesis"]["partitionKey"] == keys[0]]
    span = records[: records.index(lane_zero[-1]) + 1]

    selection = select_batch(span, info(lane_zero, 10), factor)

    assert not selection.exact
    assert reason in selection.reason


def test_a_range_shorter_than_the_batch_is_not_exact():
    records = interleaved(["a"], [3])

    selection = select_batch(records, {**info(records, 5), "endSequenceNumber": "999"}, 2)

    assert not selection.exact and "no longer has them all" in selection.reason


def test_a_dynamodb_batch_is_told_apart_by_the_lane_of_its_wire_form_item_key():
    keys = keys_in_lanes(2)
    records = [
        dynamodb_record({"pk": keys[i % 2]}, 100 + i, new_image={"pk": keys[i % 2]})
        for i in range(6)
    ]
    wire_keys = [
        json.dumps(r["dynamodb"]["Keys"], sort_keys=True, separators=(",", ":")) for r in records
    ]
    lanes = [lane_of(k, 2) for k in wire_keys]
    mine = [r for r, lane in zip(records, lanes, strict=True) if lane == lanes[0]]
    span = records[: records.index(mine[-1]) + 1]
    batch = {
        "startSequenceNumber": mine[0]["dynamodb"]["SequenceNumber"],
        "endSequenceNumber": mine[-1]["dynamodb"]["SequenceNumber"],
        "batchSize": len(mine),
    }

    selection = select_batch(span, batch, 2)

    assert selection.exact and selection.records == mine


# --- when a DynamoDB item may be written back ------------------------------------------------

IMAGE = {"pk": "d-1", "n": 7, "tags": {"a", "b"}, "blob": b"\x00"}


def parked(event_name: str = "MODIFY", **images) -> dict:
    record = dynamodb_record({"pk": "d-1"}, 500, event_name=event_name, **images)
    return record


def as_item(values: dict) -> dict:
    from boto3.dynamodb.types import TypeSerializer

    return {k: TypeSerializer().serialize(v) for k, v in values.items()}


@pytest.mark.parametrize(
    ("record", "current", "reason"),
    [
        pytest.param(parked(new_image=IMAGE, old_image={**IMAGE, "n": 6}), as_item(IMAGE), None,
                     id="unchanged"),
        pytest.param(parked(new_image=IMAGE), as_item({**IMAGE, "n": 20}), "changed after",
                     id="moved-on"),
        pytest.param(parked(new_image=IMAGE), as_item({**IMAGE, "extra": 1}), "changed after",
                     id="attribute-added"),
        pytest.param(parked(new_image=IMAGE), None, "deleted after", id="deleted-since"),
        pytest.param(parked("REMOVE", old_image=IMAGE), None, "a REMOVE cannot", id="remove"),
        pytest.param(parked("MODIFY"), as_item(IMAGE), "no NewImage", id="keys-only"),
    ],
)  # fmt: skip
def test_an_item_is_written_back_only_while_it_is_what_the_record_left(record, current, reason):
    found = check_item(record, current)

    if reason is None:
        assert found is None
    else:
        assert reason in found and '{"pk": "d-1"}' in found and "streamline-test" in found


def test_the_write_back_is_conditioned_on_every_attribute_and_only_adds_the_marker():
    record = parked(new_image=IMAGE, old_image={**IMAGE, "gone": True})

    request = rewrite_request(record, "2026-01-01T00:00:00.000000+00:00")

    assert request["TableName"] == "streamline-test"
    assert request["Key"] == {"pk": {"S": "d-1"}}
    assert request["UpdateExpression"] == "SET #replayed = :replayed"
    names, values = request["ExpressionAttributeNames"], request["ExpressionAttributeValues"]
    assert names["#replayed"] == REPLAYED_AT_ATTRIBUTE
    conditions = request["ConditionExpression"].split(" AND ")
    equal = {names[c.split(" = ")[0]]: values[c.split(" = ")[1]] for c in conditions if " = " in c}
    assert equal == {**as_item(IMAGE), "blob": {"B": b"\x00"}}
    assert [
        names[c[len("attribute_not_exists(") : -1]] for c in conditions if "not_exists" in c
    ] == ["gone"]
    assert DYNAMODB_ARN.split("/")[1] == request["TableName"]
