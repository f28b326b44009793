"""Conformance: shard lineage and resharding, against kinesalite (moto keeps writing to a
closed parent after SplitShard/MergeShards; kinesalite closes it like Kinesis does).

Reference: https://docs.aws.amazon.com/lambda/latest/dg/with-kinesis.html (a child shard is
processed only after its parent), and the Kinesis resharding guide.
"""

from __future__ import annotations

import threading
import time

import pytest
from conftest import Harness, mapping

HASH_MIDPOINT = str(2**127)


@pytest.fixture
def reshard_harness(kinesalite_session, unique_name, tmp_path, role_arn) -> Harness:
    return Harness(kinesalite_session, unique_name, tmp_path, role_arn)


def _wait_active(kinesis, name: str) -> None:
    for _ in range(200):
        status = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
        if status["StreamStatus"] == "ACTIVE":
            return
        time.sleep(0.02)
    raise TimeoutError(name)


def _open_shards(kinesis, name: str) -> list[dict]:
    shards = kinesis.list_shards(StreamName=name)["Shards"]
    return [s for s in shards if "EndingSequenceNumber" not in s["SequenceNumberRange"]]


def _events(count: int, start: int, keys: int = 8) -> list[tuple[str, str]]:
    return [(f"key-{n % keys}", f"key-{n % keys}:{n}") for n in range(start, start + count)]


def _assert_per_key_order(harness: Harness, total: int, keys: int = 8) -> None:
    seen: dict[str, list[int]] = {}
    for data in harness.delivered():
        key, n = data.split(":")
        seen.setdefault(key, []).append(int(n))
    expected = {f"key-{k}": [n for n in range(total) if n % keys == k] for k in range(keys)}
    assert seen == expected  # every record once, in order per key


def _assert_parents_before_children(harness: Harness, parents: set[str]) -> None:
    order = [shard for entry in harness.invocations() for shard in entry["shards"]]
    last_parent = max(i for i, shard in enumerate(order) if shard in parents)
    first_child = min(i for i, shard in enumerate(order) if shard not in parents)
    assert last_parent < first_child


def _run_in_background(harness, function, mappings):
    runner = harness.runner(function, mappings)
    thread = threading.Thread(target=runner.run, kwargs={"until_idle_s": 0.5})
    thread.start()
    return runner, thread


def test_split_during_processing_finishes_the_parent_before_its_children(reshard_harness):
    harness = reshard_harness
    kinesis = harness.client("kinesis")
    arn = harness.create_stream(shards=1)
    harness.put(_events(60, 0))
    function = harness.create_function(
        "esm_handlers.record", environment={"ESM_TEST_SLEEP": "0.01"}
    )
    (parent,) = _open_shards(kinesis, harness.name)

    runner, thread = _run_in_background(harness, function, [mapping(arn, batch_size=5)])
    try:
        while len(harness.invocations()) < 2:
            time.sleep(0.01)
        kinesis.split_shard(
            StreamName=harness.name,
            ShardToSplit=parent["ShardId"],
            NewStartingHashKey=HASH_MIDPOINT,
        )
        _wait_active(kinesis, harness.name)
        harness.put(_events(60, 60))
    finally:
        thread.join(60)

    _assert_per_key_order(harness, 120)
    _assert_parents_before_children(harness, {parent["ShardId"]})
    children = {s for e in harness.invocations() for s in e["shards"]} - {parent["ShardId"]}
    assert len(children) == 2  # the new shards were picked up
    assert sorted(int(s) for s in harness.invocations()[0]["sequenceNumbers"])[0] > 10**40


def test_merge_during_processing_finishes_both_parents_before_the_child(reshard_harness):
    harness = reshard_harness
    kinesis = harness.client("kinesis")
    arn = harness.create_stream(shards=2)
    harness.put(_events(60, 0))
    function = harness.create_function(
        "esm_handlers.record", environment={"ESM_TEST_SLEEP": "0.01"}
    )
    left, right = sorted(_open_shards(kinesis, harness.name), key=lambda s: s["ShardId"])

    runner, thread = _run_in_background(harness, function, [mapping(arn, batch_size=5)])
    try:
        while len(harness.invocations()) < 2:
            time.sleep(0.01)
        kinesis.merge_shards(
            StreamName=harness.name,
            ShardToMerge=left["ShardId"],
            AdjacentShardToMerge=right["ShardId"],
        )
        _wait_active(kinesis, harness.name)
        harness.put(_events(60, 60))
    finally:
        thread.join(60)

    _assert_per_key_order(harness, 120)
    _assert_parents_before_children(harness, {left["ShardId"], right["ShardId"]})


def test_stream_resharded_before_start_is_read_parent_first(reshard_harness):
    # Given records in a parent, then a split, then records in the children — all before
    harness = reshard_harness
    kinesis = harness.client("kinesis")
    arn = harness.create_stream(shards=1)
    harness.put(_events(40, 0))
    (parent,) = _open_shards(kinesis, harness.name)
    kinesis.split_shard(
        StreamName=harness.name, ShardToSplit=parent["ShardId"], NewStartingHashKey=HASH_MIDPOINT
    )
    _wait_active(kinesis, harness.name)
    harness.put(_events(40, 40))
    function = harness.create_function("esm_handlers.record")

    # When the runner starts at TRIM_HORIZON with concurrent batches per shard
    harness.run(function, [mapping(arn, batch_size=4, parallelization_factor=3)], until_idle_s=0.5)

    # Then the closed parent was read to its end before either child started
    _assert_per_key_order(harness, 80)
    _assert_parents_before_children(harness, {parent["ShardId"]})
