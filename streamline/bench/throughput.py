"""Throughput: the same per-key update, exactly once, by the ways a user can write it.

One shard's records (RECORDS events `{key, n, payload}` over KEYS keys, n = 1, 2, ... per
key) in batches of 100 and of 1,000, against moto's server behind the latency proxy
(streamline/tools/proxy.py) at 0 and 10 ms added per request. Each contender keeps, per key,
the demo's sink row (`count`, `last_n`, hash chain `h`):

- powertools_idempotent: Powertools' BatchProcessor with `@idempotent_function`
  (DynamoDBPersistenceLayer, keyed by sequence number) around a read and a conditional update
  of the row — what users pick today;
- per_record_transactional: OrderedProcessor with the demo's per-record SinkApplier (a read,
  then the row's update in one transaction with the record's checkpoint);
- keyed_state: OrderedProcessor with the demo's SinkFold (the row is the key's state, one
  transaction per key per batch), max_concurrency 1 and 16.

A slow contender runs on a prefix of the records until TIME_CAP_S, and is checked on exactly
that prefix: every key's row must count the key's events of the prefix, in order. Printed:
records/s, DynamoDB requests per record, and the capacity those request counts imply for one
shard at a real 10 ms round trip, with the pool size (moto spends milliseconds of CPU per
request here, so measured records/s say as much about the emulator as about the code).
"""

from __future__ import annotations

import base64
import json
import logging
import math
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from botocore.config import Config

from processor import OrderedProcessor
from processor.checkpoint import DynamoDBCheckpointStore
from processor.contracts import DemoEvent
from processor.handler import SinkApplier, SinkFold, SinkRow, chain
from processor.poison import MemoryPoisonSink
from processor.testing import event, kinesis_record
from streamline.emulator import Emulator, emulator_client
from streamline.tools.proxy import Proxy

RECORDS = 2_000
KEYS = 100
BATCH_SIZES = (100, 1_000)
LATENCIES_MS = (0, 10)
TIME_CAP_S = 12.0
REAL_ROUND_TRIP_S = 0.010
READ_OPERATIONS = frozenset({"GetItem", "BatchGetItem", "Query"})


def make_records() -> list[dict]:
    base = 49590338271490256608559692538361571095921575989136588898
    records = []
    for i in range(RECORDS):
        demo = DemoEvent(f"key-{i % KEYS:03d}", i // KEYS + 1, f"payload-{i:05d}")
        records.append(kinesis_record(demo.key, base + i, demo.body()))
    return records


def quiet_logger() -> logging.Logger:
    logger = logging.getLogger("streamline.bench.throughput")
    logger.addHandler(logging.NullHandler())
    logger.propagate = False
    return logger


@dataclass
class Tables:
    client: object
    checkpoints: str
    sink: str
    idempotency: str


def create_tables(client) -> Tables:
    suffix = uuid.uuid4().hex[:8]
    names = Tables(client, f"ckpt-{suffix}", f"sink-{suffix}", f"idem-{suffix}")
    for name, key in ((names.checkpoints, "pk"), (names.sink, "pk"), (names.idempotency, "id")):
        client.create_table(
            TableName=name,
            KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
    return names


# --- the contenders: each returns a handler of one Lambda event -------------------------------


def powertools_idempotent(tables: Tables, concurrency: int) -> Callable[[dict], object]:
    from aws_lambda_powertools.utilities.batch import (
        BatchProcessor,
        EventType,
        process_partial_response,
    )
    from aws_lambda_powertools.utilities.idempotency import (
        DynamoDBPersistenceLayer,
        IdempotencyConfig,
        idempotent_function,
    )

    client = tables.client
    persistence = DynamoDBPersistenceLayer(table_name=tables.idempotency, boto3_client=client)
    config = IdempotencyConfig(event_key_jmespath="sequence_number")

    @idempotent_function(data_keyword_argument="task", persistence_store=persistence, config=config)
    def update_row(task: dict) -> dict:
        key = {"pk": {"S": task["key"]}}
        item = client.get_item(TableName=tables.sink, Key=key, ConsistentRead=True).get("Item")
        row = SinkRow.from_item(item)
        condition = "#h = :old" if row.h else "attribute_not_exists(#h)"
        values = {
            ":n": {"N": str(task["n"])},
            ":count": {"N": str(row.count + 1)},
            ":h": {"S": chain(row.h, task["payload"])},
        }
        if row.h:
            values[":old"] = {"S": row.h}
        client.update_item(
            TableName=tables.sink,
            Key=key,
            UpdateExpression="SET last_n = :n, #count = :count, #h = :h",
            ConditionExpression=condition,
            ExpressionAttributeNames={"#count": "count", "#h": "h"},
            ExpressionAttributeValues=values,
        )
        return {"ok": True}

    def record_handler(record) -> None:
        body = json.loads(record.kinesis.data_as_bytes())
        update_row(task={**body, "sequence_number": record.kinesis.sequence_number})

    processor = BatchProcessor(event_type=EventType.KinesisDataStreams)

    def handle(batch: dict) -> object:
        return process_partial_response(
            event=batch, record_handler=record_handler, processor=processor, context=None
        )

    return handle


def per_record_transactional(tables: Tables, concurrency: int) -> Callable[[dict], object]:
    processor = OrderedProcessor(
        SinkApplier(tables.sink, boto3_client=tables.client),
        checkpoints=DynamoDBCheckpointStore(tables.checkpoints, boto3_client=tables.client),
        poison=MemoryPoisonSink(),
        logger=quiet_logger(),
        max_concurrency=concurrency,
    )
    return processor.process


def keyed_state(tables: Tables, concurrency: int) -> Callable[[dict], object]:
    sink = SinkFold(tables.sink, log=quiet_logger())
    processor = OrderedProcessor(
        sink,
        checkpoints=DynamoDBCheckpointStore(tables.checkpoints, boto3_client=tables.client),
        poison=MemoryPoisonSink(),
        logger=quiet_logger(),
        keyed_state=True,
        max_concurrency=concurrency,
        state_effects=sink.row_update,
    )
    return processor.process


CONTENDERS: list[tuple[str, Callable[[Tables, int], Callable[[dict], object]], int]] = [
    ("powertools_idempotent", powertools_idempotent, 1),
    ("per_record_transactional", per_record_transactional, 1),
    ("keyed_state", keyed_state, 1),
    ("keyed_state", keyed_state, 16),
]


# --- measuring -------------------------------------------------------------------------------


def check_prefix(tables: Tables, records: list[dict]) -> None:
    """Every key's row counts exactly its events of the prefix, chained in order."""
    expected: dict[str, tuple[int, int, str]] = {}
    for record in records:
        body = json.loads(base64.b64decode(record["kinesis"]["data"]))
        count, _, h = expected.get(body["key"], (0, 0, ""))
        expected[body["key"]] = (count + 1, body["n"], chain(h, body["payload"]))
    rows = {}
    for page in tables.client.get_paginator("scan").paginate(TableName=tables.sink):
        for item in page["Items"]:
            row = SinkRow.from_item(item)
            rows[item["pk"]["S"]] = (row.count, row.last_n, row.h)
    if rows != expected:
        wrong = sorted(k for k in expected.keys() | rows.keys() if rows.get(k) != expected.get(k))
        raise AssertionError(f"sink rows differ from the events processed, keys {wrong[:5]}")


def measure(
    name: str,
    build: Callable[[Tables, int], Callable[[dict], object]],
    concurrency: int,
    batch_size: int,
    latency_ms: int,
    proxy: Proxy,
    records: list[dict],
) -> dict:
    client = emulator_client("dynamodb", proxy.endpoint, config=Config(max_pool_connections=64))
    tables = create_tables(client)
    handle = build(tables, concurrency)
    proxy.latency_s = latency_ms / 1000
    proxy.stats.reset()
    processed = 0
    started = time.perf_counter()
    for start in range(0, len(records), batch_size):
        response = handle(event(*records[start : start + batch_size]))
        if response and response.get("batchItemFailures"):
            raise AssertionError(f"{name}: a batch failed: {response}")
        processed = min(len(records), start + batch_size)
        if time.perf_counter() - started > TIME_CAP_S:
            break
    elapsed_s = time.perf_counter() - started
    requests = dict(proxy.stats.requests)
    proxy.latency_s = 0
    check_prefix(tables, records[:processed])
    total = sum(requests.values())
    batches = math.ceil(processed / batch_size)
    reads = sum(n for op, n in requests.items() if op in READ_OPERATIONS) / batches
    writes = (total / batches) - reads
    # At a real round trip, a batch waits for its reads, then its writes `concurrency` at a
    # time (the per-record contenders wait for every request in turn).
    round_trips = reads + math.ceil(writes / concurrency)
    return {
        "name": f"throughput.{name}",
        "max_concurrency": concurrency,
        "batch_size": batch_size,
        "keys": KEYS,
        "added_latency_ms": latency_ms,
        "records": processed,
        "capped": processed < len(records),
        "records_per_s": round(processed / elapsed_s, 1),
        "dynamodb_requests_per_record": round(total / processed, 3),
        "requests": requests,
        "implied_records_per_s_at_10ms": round(batch_size / (round_trips * REAL_ROUND_TRIP_S)),
    }


def run() -> Iterator[dict]:
    records = make_records()
    emulator = Emulator.start()
    try:
        with Proxy(emulator.endpoint) as proxy:
            for latency_ms in LATENCIES_MS:
                results = []
                for batch_size in BATCH_SIZES:
                    for name, build, concurrency in CONTENDERS:
                        result = measure(
                            name, build, concurrency, batch_size, latency_ms, proxy, records
                        )
                        results.append(result)
                        yield result
                yield _ratios(results, latency_ms)
    finally:
        emulator.stop()


def _ratios(results: list[dict], latency_ms: int) -> dict:
    """Keyed state (default pool) against the Powertools baseline, per batch size."""
    figures: dict[str, float] = {}
    for batch_size in BATCH_SIZES:
        by = {
            (r["name"], r["max_concurrency"]): r for r in results if r["batch_size"] == batch_size
        }
        keyed = by[("throughput.keyed_state", 16)]
        baseline = by[("throughput.powertools_idempotent", 1)]
        figures[f"keyed_vs_powertools_records_per_s_batch_{batch_size}"] = round(
            keyed["records_per_s"] / baseline["records_per_s"], 1
        )
    return {"name": "throughput.ratio", "added_latency_ms": latency_ms, **figures}
