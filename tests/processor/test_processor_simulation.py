"""The processor inside a simulated event source mapping, through random faults (hypothesis).

For plain and KPL Kinesis records and for DynamoDB records (composite and binary keys, REMOVE
events, malformed images), through partial failures, function errors with and without
bisect, retries that run out, duplicate and stale deliveries, the time budget and a failing
checkpoint store, then the user's replays of both queues. Half the scenarios validate the
payloads against a model, with random records that break it. Per key it checks what a user is
promised: every effect once, in order; every poison record parked with its payload; a record
that breaks the contract parked at once, never seen by the application; no shard stuck; a
full redelivery of the drained stream changes nothing; and a replay deletes only what was
applied.

The example budget is fixed for `make test`; `SIMULATION_EXAMPLES=5000 make simulation` runs
a larger one.
"""

from __future__ import annotations

import base64
import json
import os
from collections import Counter, defaultdict

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from stream_simulation import (
    BROKEN_VERSION,
    CONTRACT_VERSION,
    Fate,
    Faults,
    Simulation,
    StreamRecord,
    UserRecord,
    Versioned,
)

from processor.contracts import replay_record_id
from processor.records import serialise_key
from processor.testing import dynamodb_record, kinesis_record, kinesis_record_raw, kpl_aggregate

EXAMPLES = int(os.environ.get("SIMULATION_EXAMPLES", "150"))
SIMULATION = settings(
    max_examples=EXAMPLES,
    derandomize=EXAMPLES <= 150,  # the same examples on every `make test`
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)

# Sequence numbers start where their decimal length changes, so string order would be wrong.
STARTS = [1, 8, 95, 998, 10**20 - 3, 49_590_338_271_490_256_608_559_692_538_361_571_095_921]


def fates(contract: bool) -> st.SearchStrategy:
    """A user record's fate; with a contract, its payload may break it."""
    fate = st.one_of(
        st.just((Fate.OK, 0)),
        st.just((Fate.OK, 0)),
        st.tuples(st.just(Fate.TRANSIENT), st.integers(1, 3)),
        st.just((Fate.POISON, 0)),
    )
    return st.one_of(fate, st.just((Fate.CONTRACT, 0))) if contract else fate


def version(fate: Fate) -> dict:
    return BROKEN_VERSION if fate is Fate.CONTRACT else CONTRACT_VERSION


@st.composite
def kinesis_stream(draw, contract: bool) -> list[StreamRecord]:
    keys = draw(st.lists(st.sampled_from("abcdef"), min_size=1, max_size=4, unique=True))
    sequence = draw(st.sampled_from(STARTS))
    stream = []
    for _ in range(draw(st.integers(1, 24))):
        sequence += draw(st.one_of(st.integers(1, 3), st.integers(1, 10**6)))
        kind = draw(st.sampled_from(["plain", "plain", "plain", "kpl", "bad-base64", "bad-kpl"]))
        key = draw(st.sampled_from(keys))
        if kind == "plain":
            fate, failures = draw(fates(contract))
            user = UserRecord(key, (sequence, 0), fate, failures)
            raw = kinesis_record(key, sequence, {"key": key, "seq": sequence, **version(fate)})
            stream.append(StreamRecord(raw, sequence, [user], key))
        elif kind == "kpl":
            subs = draw(st.lists(st.sampled_from(keys), min_size=1, max_size=4))
            users = []
            for sub, sub_key in enumerate(subs):
                fate, failures = draw(fates(contract))
                users.append(UserRecord(sub_key, (sequence, sub), fate, failures))
            aggregate = kpl_aggregate(
                [
                    (
                        u.key,
                        json.dumps({"key": u.key, "sub": u.position, **version(u.fate)}).encode(),
                    )
                    for u in users
                ]
            )
            raw = kinesis_record(subs[0], sequence, aggregate)
            stream.append(StreamRecord(raw, sequence, users, subs[0]))
        elif kind == "bad-base64":
            stream.append(
                StreamRecord(kinesis_record_raw(key, sequence, "not base64!"), sequence, [], key)
            )
        else:
            aggregate = bytearray(kpl_aggregate([(key, b"{}"), (key, b"{}")]))
            aggregate[-1] ^= 0xFF  # the MD5 trailer no longer matches
            raw = kinesis_record(key, sequence, bytes(aggregate))
            stream.append(StreamRecord(raw, sequence, [], key))
    return stream


@st.composite
def dynamodb_stream(draw, contract: bool) -> list[StreamRecord]:
    items = draw(
        st.lists(
            st.tuples(
                st.sampled_from("pq"),
                st.one_of(st.integers(0, 2), st.binary(min_size=1, max_size=3)),
            ),
            min_size=1,
            max_size=4,
            unique=True,
        )
    )
    sequence = draw(st.sampled_from(STARTS))
    stream = []
    exists: dict[tuple, bool] = defaultdict(bool)
    for _ in range(draw(st.integers(1, 24))):
        sequence += draw(st.one_of(st.integers(1, 3), st.integers(1, 10**6)))
        pk, sk = draw(st.sampled_from(items))
        keys = {"pk": pk, "sk": sk}
        key = serialise_key(keys)
        fate, failures = draw(fates(contract))
        image = {
            **keys,
            "seq": str(sequence),
            "blob": b"\x00" + bytes([sequence % 256]),
            **version(fate),
        }
        if draw(st.booleans()):
            image["tags"] = {b"x", b"y"}
        if not exists[(pk, sk)]:
            event_name, new, old = "INSERT", image, None
        elif draw(st.integers(0, 3)) == 0:
            event_name, new, old = "REMOVE", None, {**keys}
        else:
            event_name, new, old = "MODIFY", image, {**keys}
        exists[(pk, sk)] = event_name != "REMOVE"
        raw = dynamodb_record(keys, sequence, event_name=event_name, new_image=new, old_image=old)
        if event_name != "REMOVE" and draw(st.integers(0, 6)) == 0:
            raw["dynamodb"]["NewImage"]["seq"] = {"BOGUS": "1"}  # a malformed image
            stream.append(StreamRecord(raw, sequence, [], key))
            continue
        if event_name == "REMOVE" and fate is Fate.CONTRACT:
            fate = Fate.OK  # a REMOVE has no NewImage: nothing of it is validated
        stream.append(
            StreamRecord(raw, sequence, [UserRecord(key, (sequence, 0), fate, failures)], key)
        )
    return stream


@st.composite
def faults(draw, transactional: bool) -> Faults:
    return Faults(
        store_failure_rate=draw(st.sampled_from([0.0, 0.0, 0.1, 0.25])),
        store_fails_after_write=transactional and draw(st.booleans()),
        bisect=draw(st.booleans()),
        max_retry_attempts=draw(st.sampled_from([None, None, 0, 1, 3])),
        duplicate_rate=draw(st.sampled_from([0.0, 0.2, 0.5])),
        stale_rate=draw(st.sampled_from([0.0, 0.2])),
        budget_cut_rate=draw(st.sampled_from([0.0, 0.2])),
        max_batch_size=draw(st.integers(1, 10)),
    )


scenarios = st.tuples(
    # with or without a payload contract (a model), and records that break it
    st.booleans().flatmap(
        lambda contract: st.one_of(kinesis_stream(contract), dynamodb_stream(contract)).map(
            lambda stream: (stream, contract)
        )
    ),
    # plain side effects, transactional effects, or keyed state (a fold, with the effects)
    st.sampled_from(["plain", "transactional", "keyed"]),
    st.integers(1, 4),  # max_attempts
    st.randoms(use_true_random=False),
).flatmap(
    lambda s: st.tuples(
        st.just(s[0]), st.just(s[1]), st.just(s[2]), st.just(s[3]), faults(s[1] != "plain")
    )
)


def _run(stream, mode, max_attempts, rng, fault_plan, contract) -> Simulation:
    if mode == "plain":
        # Plain side effects are at-least-once when a checkpoint write is lost after the
        # effect; exactly-once is promised only with transaction items. Plain runs keep the
        # store's failures to reads, which happen before anything is applied.
        fault_plan.store_write_failures = False
        fault_plan.store_fails_after_write = False
    simulation = Simulation(
        stream,
        fault_plan,
        rng,
        transactional=mode == "transactional",
        keyed=mode == "keyed",
        max_attempts=max_attempts,
        model=Versioned if contract else None,
    )
    simulation.drain()
    return simulation


@SIMULATION
@given(scenarios)
def test_every_record_takes_effect_once_in_order_or_is_parked_and_nothing_is_stuck(scenario):
    (stream, contract), mode, max_attempts, rng, fault_plan = scenario
    simulation = _run(stream, mode, max_attempts, rng, fault_plan, contract)
    assert simulation.outcome.drained  # no shard stuck (the invocation bound holds)

    _label(simulation, stream)
    before_replay = simulation.effects()
    parked_before_replay = simulation.parked_counts()
    simulation.replay_all()
    effects = simulation.effects()
    counts = Counter(position for _, position, _ in effects)

    users = [user for record in stream for user in record.users]
    unparseable = [record for record in stream if not record.users]
    kept = simulation.outcome.kept
    given_up = {
        index
        for failure in simulation.outcome.on_failure
        for index in range(failure.start, failure.end)
    }
    write_faults = simulation.store.write_faults

    # Nothing applied twice.
    assert [p for p, n in counts.items() if n > 1] == []
    # Nothing lost silently: applied, or on a queue the replay kept (and says so).
    for user in users:
        assert counts[user.position] == 1 or user.position in kept, user
    # What replay deletes was applied.
    for position in simulation.outcome.deleted:
        assert counts[position] == 1 or position in parked_before_replay, position
    # Per key, the stream's own deliveries settled (applied or parked) in stream order.
    assert not any(replayed for _, _, replayed in before_replay)
    by_key = defaultdict(list)
    for key, position, replayed in simulation.app.timeline:
        if not replayed and position not in by_key[key]:
            by_key[key].append(position)
    for key, positions in by_key.items():
        assert positions == sorted(positions), key
    # A record that parses is never parked as unparseable; one that breaks the contract is
    # parked as such on its first try (no retry can help it), and nothing else is.
    parseable = {user.position for user in users}
    broken = {user.position for user in users if user.fate is Fate.CONTRACT}
    for message in map(json.loads, simulation.poison.messages):
        position = (int(message["sequenceNumber"]), message["subSequenceNumber"])
        if position in broken:
            assert message["error"]["type"] == "InvalidPayloadError", message["error"]
            assert message["attempts"] == 1, message
        elif position in parseable:
            assert message["error"]["type"] in ("ValueError", "RuntimeError"), message["error"]
    # Replay keeps a message only when it must: a record that cannot parse and was never
    # parked, a record that still breaks the contract, or records behind their key after a
    # function error (nobody can tell).
    broken_ids = {replay_record_id(str(p[0]), p[1]) for p in broken}
    for message in simulation.outcome.kept_messages:
        if message.poison:
            assert not set(message.positions) & (parseable - broken), message
        elif message.function_error is None:
            assert message.report["unparseable"] or set(message.report["failed"]) & broken_ids
            assert set(message.report["failed"]) <= broken_ids, message
    # Poison records and unparseable ones: parked with their payload, once (a lost answer
    # from a checkpoint write can park a record twice; replay then applies it once).
    for user in users:
        parked = parked_before_replay[user.position]
        if user.fate is Fate.POISON and parked:
            assert parked == 1 or write_faults, user
    for record in unparseable:
        parked = parked_before_replay[(record.sequence_number, 0)]
        index = stream.index(record)
        assert parked >= 1 or index in given_up, record.raw
        assert parked <= 1 or write_faults, record.raw
    for index, record in enumerate(stream):
        for user in record.users:
            if user.fate is Fate.CONTRACT:
                parked = parked_before_replay[user.position]
                assert parked >= 1 or index in given_up, user
                assert parked <= 1 or write_faults, user
                assert counts[user.position] == 0, user  # never applied, not even by a replay
    for message in map(json.loads, simulation.poison.messages):
        record = next(r for r in stream if r.sequence_number == int(message["sequenceNumber"]))
        # Parked under its own key, parseable or not: the key its item's other records have.
        position = (record.sequence_number, message["subSequenceNumber"])
        owner = next((u.key for u in record.users if u.position == position), record.key)
        assert message["partitionKey"] == owner, message
        if message["source"] == "dynamodb":
            assert message["dynamodb"] == record.raw["dynamodb"]
        elif record.users and not message.get("truncated"):
            data = json.loads(base64.b64decode(message["data"]))
            assert data["key"] == message["partitionKey"]
        else:
            assert message["data"] == record.raw["kinesis"]["data"]

    # A full redelivery of the drained stream changes nothing that took effect: only records
    # no one applied (on a queue replay kept) may apply now, once.
    responses = simulation.redeliver_everything()
    assert [r for r in responses if r is None or r["batchItemFailures"]] == []
    after = simulation.effects()
    assert after[: len(effects)] == effects
    assert {position for _, position, _ in after[len(effects) :]} <= kept
    assert [p for p, n in Counter(p for _, p, _ in after).items() if n > 1] == []
    parked_after = simulation.parked_counts()
    for position, n in parked_after.items():
        assert (
            n == parked_before_replay[position]
            or (parked_before_replay[position] == 0 and position in kept)
            or write_faults  # the park's checkpoint write was lost: parked again, same body
        ), position
    if mode == "keyed":
        # A key's state and its effects commit together: the state lists exactly the
        # positions whose effects took effect, in the order they did.
        arn = stream[0].raw["eventSourceARN"]
        for key in {record.key for record in stream} | {user.key for user in users}:
            state = simulation.memory.state_of(arn, key) or []
            assert [tuple(p) for p in state] == [p for k, p, _ in after if k == key], (
                key,
                state,
                after,
            )


def _label(simulation: Simulation, stream: list[StreamRecord]) -> None:
    """What each example exercised (pytest --hypothesis-show-statistics prints the share)."""
    source = "dynamodb" if "dynamodb" in stream[0].raw else "kinesis"
    event(f"source: {source}")
    if simulation.app.keyed:
        event("keyed state")
    if any(len(record.users) > 1 for record in stream):
        event("KPL aggregates")
    if any(not record.users for record in stream):
        event("unparseable records")
    if any(u.fate is Fate.CONTRACT for record in stream for u in record.users):
        event("contract violations")
    if simulation.outcome.on_failure:
        event("the ESM gave up on a batch")
    if any(f.function_error for f in simulation.outcome.on_failure):
        event("the ESM gave up after a function error")
    if simulation.store.write_faults:
        event("a checkpoint write failed")
    if simulation.poison.messages:
        event("records parked")
