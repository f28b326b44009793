"""scripts/load.py: re-sending exactly the failed entries, per-key order, the manifest."""

from __future__ import annotations

import base64
import json
import random
import time
from collections import defaultdict

import pytest
from aws_kinesis_agg.deaggregator import iter_deaggregate_records
from botocore.exceptions import ClientError

from streamline.tools import load
from streamline.tools.load import (
    Backoff,
    Event,
    ResendExhausted,
    Source,
    Unit,
    aggregated_units,
    batch_write_resending_unprocessed,
    generate_events,
    kinesis_units,
    plan_batches,
    put_records_resending_failures,
    shard_for_partition_key,
)

THROTTLED = "ProvisionedThroughputExceededException"


def throttling_error(operation: str) -> ClientError:
    return ClientError({"Error": {"Code": THROTTLED, "Message": "Rate exceeded"}}, operation)


class FlakyKinesis:
    """PutRecords that fails the entries of the listed partition keys the first time it sees
    them (as Kinesis does under load: per entry, with the request as a whole succeeding)."""

    def __init__(self, fail_once: set[str] = frozenset(), throttle_calls: int = 0):
        self.fail_once = set(fail_once)
        self.throttle_calls = throttle_calls
        self.calls: list[list[dict]] = []
        self.accepted: list[dict] = []

    def put_records(self, Records, StreamName=None, StreamARN=None):  # noqa: N803 (boto3's names)
        self.calls.append(list(Records))
        if self.throttle_calls:
            self.throttle_calls -= 1
            raise throttling_error("PutRecords")
        results = []
        for record in Records:
            if record["PartitionKey"] in self.fail_once:
                self.fail_once.discard(record["PartitionKey"])
                results.append({"ErrorCode": THROTTLED, "ErrorMessage": "Rate exceeded"})
            else:
                self.accepted.append(record)
                results.append(
                    {"ShardId": "shardId-000000000000", "SequenceNumber": str(len(self.accepted))}
                )
        failed = sum("ErrorCode" in r for r in results)
        return {"FailedRecordCount": failed, "Records": results}


def user_records(boto3_records: list[dict]) -> list[dict]:
    """Deaggregated user records with `data` as bytes (aws-kinesis-agg base64-encodes the data
    of aggregated ones only)."""
    found = []
    for record in iter_deaggregate_records(boto3_records, data_format="Boto3"):
        data = record["kinesis"]["data"]
        if record["kinesis"].get("aggregated"):
            data = base64.b64decode(data)
        found.append({**record["kinesis"], "data": data})
    return found


def entries(*keys: str) -> list[dict]:
    return [{"Data": f"data-{key}".encode(), "PartitionKey": key} for key in keys]


def no_sleep(_seconds: float) -> None:
    pass


# --- re-sending (no server) --------------------------------------------------------------


def test_only_the_entries_reported_failed_are_sent_again():
    client = FlakyKinesis(fail_once={"b", "d"})

    put_records_resending_failures(
        client, entries("a", "b", "c", "d", "e"), stream_name="s", sleep=no_sleep
    )

    assert [r["PartitionKey"] for r in client.calls[0]] == ["a", "b", "c", "d", "e"]
    assert [r["PartitionKey"] for r in client.calls[1]] == ["b", "d"]
    assert len(client.calls) == 2


def test_each_entry_gets_its_own_result_in_entry_order():
    client = FlakyKinesis(fail_once={"a"})

    results = put_records_resending_failures(
        client, entries("a", "b", "c"), stream_name="s", sleep=no_sleep
    )

    # b and c were accepted first (1, 2), a on the re-send (3)
    assert [r["SequenceNumber"] for r in results] == ["3", "1", "2"]


def test_a_throttled_request_is_retried_whole_after_a_backoff():
    client = FlakyKinesis(throttle_calls=2)
    slept: list[float] = []

    put_records_resending_failures(
        client, entries("a", "b"), stream_name="s", sleep=slept.append, backoff=Backoff(cap_s=0.5)
    )

    assert len(client.calls) == 3
    assert all(call == client.calls[0] for call in client.calls)
    assert len(slept) == 2 and all(0 <= s <= 0.5 for s in slept)
    assert [r["PartitionKey"] for r in client.accepted] == ["a", "b"]


def test_a_non_retryable_entry_error_is_raised():
    class Denied(FlakyKinesis):
        def put_records(self, Records, StreamName=None, StreamARN=None):  # noqa: N803
            return {
                "FailedRecordCount": 1,
                "Records": [{"ErrorCode": "KMSAccessDeniedException", "ErrorMessage": "no"}],
            }

    with pytest.raises(ResendExhausted, match="KMSAccessDeniedException"):
        put_records_resending_failures(Denied(), entries("a"), stream_name="s", sleep=no_sleep)


def test_gives_up_after_max_attempts_naming_the_entries_still_failing():
    client = FlakyKinesis(throttle_calls=100)

    with pytest.raises(ResendExhausted) as raised:
        put_records_resending_failures(
            client, entries("a", "b"), stream_name="s", max_attempts=3, sleep=no_sleep
        )

    assert len(client.calls) == 3
    assert [e["PartitionKey"] for e in raised.value.failed] == ["a", "b"]


def test_unprocessed_items_are_written_again_until_none_are_left():
    class FlakyDynamoDB:
        def __init__(self):
            self.calls: list[list[dict]] = []

        def batch_write_item(self, RequestItems):  # noqa: N803
            requests = RequestItems["t"]
            self.calls.append(requests)
            if len(self.calls) == 1:
                return {"UnprocessedItems": {"t": requests[1:2]}}
            return {"UnprocessedItems": {}}

    client = FlakyDynamoDB()
    items = [{"pk": {"S": key}} for key in ("a", "b", "c")]

    batch_write_resending_unprocessed(client, "t", items, sleep=no_sleep)

    assert [r["PutRequest"]["Item"]["pk"]["S"] for r in client.calls[1]] == ["b"]
    assert len(client.calls) == 2


# --- planning requests (no server) ---------------------------------------------------------


def unit(key: str, n: int) -> Unit:
    event = Event(0, Source.KINESIS, key, n, "p")
    return Unit({"PartitionKey": key}, [event], key, 10)


def test_a_request_never_holds_two_entries_of_one_key():
    units = [unit(key, n) for n in (1, 2, 3) for key in ("a", "b")] + [unit("a", 4)]

    batches = list(plan_batches(units, max_entries=500, max_bytes=10_000))

    for batch in batches:
        keys = [u.events[0].key for u in batch]
        assert len(keys) == len(set(keys))
    assert sum(len(b) for b in batches) == len(units)


def test_a_key_waiting_for_the_next_request_is_not_overtaken_by_its_later_entries():
    units = [unit("a", 1), unit("a", 2), unit("b", 1), unit("a", 3), unit("c", 1)]

    batches = list(plan_batches(units, max_entries=500, max_bytes=10_000))

    order: dict[str, list[int]] = defaultdict(list)
    for batch in batches:
        for u in batch:
            order[u.events[0].key].append(u.events[0].n)
    assert order == {"a": [1, 2, 3], "b": [1], "c": [1]}
    assert [(u.events[0].key, u.events[0].n) for u in batches[0]] == [("a", 1), ("b", 1), ("c", 1)]


def test_requests_respect_the_entry_and_byte_limits():
    units = [unit(f"k{i}", 1) for i in range(12)]

    by_count = list(plan_batches(units, max_entries=5, max_bytes=10_000))
    by_bytes = list(plan_batches(units, max_entries=500, max_bytes=35))

    assert [len(b) for b in by_count] == [5, 5, 2]
    assert [len(b) for b in by_bytes] == [3, 3, 3, 3]


def test_events_are_numbered_from_one_per_key_and_split_over_sources():
    events = generate_events(100, 10, [Source.KINESIS, Source.DYNAMODB], poison_fraction=0.1)

    per_key: dict[str, list[int]] = defaultdict(list)
    for event in events:
        per_key[event.key].append(event.n)
    assert len(per_key) == 10
    assert all(ns == list(range(1, len(ns) + 1)) for ns in per_key.values())
    assert {k[:2] for k in per_key} == {"k-", "d-"}
    assert sum(e.source is Source.KINESIS for e in events) == 50
    assert 0 < sum(e.poison for e in events) < 30


def test_aggregates_keep_every_key_on_its_own_shard_and_in_order():
    shards = [
        {
            "ShardId": f"shardId-{i}",
            "HashKeyRange": {"StartingHashKey": str(low), "EndingHashKey": str(low + 2**126 - 1)},
        }
        for i, low in enumerate(range(0, 2**128, 2**126))
    ]
    events = generate_events(300, 12, [Source.KINESIS])

    units = aggregated_units(events, shards, max_user_records=7)

    seen: dict[str, list[int]] = defaultdict(list)
    for u in units:
        boto3_record = {
            "Data": u.entry["Data"],
            "PartitionKey": u.entry["PartitionKey"],
            "SequenceNumber": "1",
            "ApproximateArrivalTimestamp": 0,
        }
        carried = user_records([boto3_record])
        assert len(carried) == len(u.events) <= 7
        target = shard_for_partition_key(u.entry["PartitionKey"], shards)
        for user_record in carried:
            body = json.loads(user_record["data"])
            assert shard_for_partition_key(body["key"], shards) == target
            seen[body["key"]].append(body["n"])
    assert all(ns == list(range(1, 26)) for ns in seen.values()) and len(seen) == 12


# --- against the emulator --------------------------------------------------------------------


def read_user_records(kinesis, stream_name: str) -> list[tuple[str, dict]]:
    """Every user record on the stream, deaggregated: (shard id, body)."""
    found = []
    for shard in kinesis.list_shards(StreamName=stream_name)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream_name, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while True:
            response = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            if not response["Records"]:
                break
            for record in user_records(response["Records"]):
                found.append((shard["ShardId"], json.loads(record["data"])))
            iterator = response["NextShardIterator"]
    return found


class InjectEntryFailures:
    """Makes a real endpoint fail some PutRecords entries: botocore hooks drop them from the
    request before it is sent and mark them failed in the parsed response, as Kinesis does."""

    def __init__(self, client, fraction: float, rounds: int, seed: int = 7):
        self.rng = random.Random(seed)
        self.fraction = fraction
        self.rounds = rounds
        self.dropped: list[list[int]] = []
        self.total_dropped = 0
        client.meta.events.register("provide-client-params.kinesis.PutRecords", self.before)
        client.meta.events.register("after-call.kinesis.PutRecords", self.after)

    def before(self, params, **_):
        records = params["Records"]
        drop = []
        if self.rounds:
            self.rounds -= 1
            drop = [i for i in range(len(records)) if self.rng.random() < self.fraction]
        self.dropped.append(drop)
        self.total_dropped += len(drop)
        params["Records"] = [r for i, r in enumerate(records) if i not in set(drop)]

    def after(self, parsed, **_):
        for index in self.dropped[-1]:
            parsed["Records"].insert(index, {"ErrorCode": THROTTLED, "ErrorMessage": "injected"})
        parsed["FailedRecordCount"] += len(self.dropped[-1])


@pytest.mark.integration
def test_entries_failed_by_the_endpoint_land_exactly_once_in_key_order(aws_session, demo_stack):
    kinesis = aws_session.client("kinesis")
    injector = InjectEntryFailures(kinesis, fraction=0.3, rounds=6)
    events = generate_events(600, 30, [Source.KINESIS])
    stats = load.ResendStats()

    for batch in plan_batches(kinesis_units(events), 500, 5 * 1024 * 1024):
        put_records_resending_failures(
            kinesis,
            [u.entry for u in batch],
            stream_name=demo_stack["kinesis_stream_name"],
            sleep=no_sleep,
            stats=stats,
        )

    assert injector.total_dropped > 0 and stats.resent == injector.total_dropped
    on_stream = read_user_records(kinesis, demo_stack["kinesis_stream_name"])
    per_key: dict[str, list[int]] = defaultdict(list)
    for _, body in on_stream:
        per_key[body["key"]].append(body["n"])
    assert len(on_stream) == 600
    assert all(ns == list(range(1, 21)) for ns in per_key.values()) and len(per_key) == 30


def dynamodb_stream_images(aws_session, stream_arn: str) -> list[dict]:
    streams = aws_session.client("dynamodbstreams")
    images = []
    for shard in streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(
            StreamArn=stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            response = streams.get_records(ShardIterator=iterator, Limit=1000)
            if not response["Records"]:
                break
            images += [r["dynamodb"]["NewImage"] for r in response["Records"]]
            iterator = response.get("NextShardIterator")
    return images


@pytest.mark.integration
def test_the_cli_loads_both_sources_aggregated_and_writes_the_manifest(
    aws_session, demo_stack, tmp_path, capsys
):
    manifest_path = tmp_path / "manifest.json"

    code = load.main(
        [
            "--stack",
            demo_stack["path"],
            "--count",
            "400",
            "--keys",
            "8",
            "--source",
            "both",
            "--aggregate",
            "--aggregate-max-records",
            "10",
            "--poison-fraction",
            "0.05",
            "--run-id",
            "abc1",
            "--manifest",
            str(manifest_path),
        ]
    )

    assert code == 0
    assert "sent 400 events over 8 keys" in capsys.readouterr().out
    manifest = json.loads(manifest_path.read_text())
    assert manifest["complete"] is True and len(manifest["events"]) == 400
    kinesis_rows = [e for e in manifest["events"] if e["source"] == "kinesis"]
    assert all(e["sequenceNumber"] and e["shardId"] for e in kinesis_rows)
    poison = {(e["key"], e["n"]) for e in manifest["events"] if e["poison"]}
    assert poison

    on_stream = read_user_records(aws_session.client("kinesis"), demo_stack["kinesis_stream_name"])
    assert [
        (shard, body["key"], body["n"], body["payload"])
        for shard, body in on_stream
        if body["key"] == "k-abc1-0001"
    ] == [
        (e["shardId"], e["key"], e["n"], e["payload"])
        for e in kinesis_rows
        if e["key"] == "k-abc1-0001"
    ]
    assert sum(e["key"] == "k-abc1-0001" for e in kinesis_rows) == 50
    assert {(b["key"], b["n"]) for _, b in on_stream if b.get("poison")} == {
        p for p in poison if p[0].startswith("k-")
    }

    images = dynamodb_stream_images(aws_session, demo_stack["source_table_stream_arn"])
    per_key: dict[str, list[int]] = defaultdict(list)
    for image in images:
        per_key[image["pk"]["S"]].append(int(image["n"]["N"]))
    assert len(images) == 200
    assert all(ns == list(range(1, 51)) for ns in per_key.values()) and len(per_key) == 4


def test_the_rate_limit_spaces_requests_by_their_event_count():
    limiter = load.RateLimiter(rate=200)
    started = time.monotonic()

    for _ in range(3):
        limiter.acquire(20)  # 0.1 s of budget each; the first goes at once

    assert 0.18 <= time.monotonic() - started < 1.0


def test_each_key_is_sent_by_exactly_one_sender_lane():
    units = kinesis_units(generate_events(200, 20, [Source.KINESIS]))

    lanes = load.sender_lanes(units, workers=3)

    owners = defaultdict(set)
    for number, lane in enumerate(lanes):
        for u in lane:
            owners[u.events[0].key].add(number)
    assert all(len(o) == 1 for o in owners.values()) and len(owners) == 20
    assert sum(len(lane) for lane in lanes) == 200
