"""Benchmarks of the ordered batch processor (run through `make bench`).

- per_record_overhead: µs per record for one 10,000-record Kinesis batch over 1,000 keys,
  spent by a plain loop, by Powertools' BatchProcessor and by OrderedProcessor (memory store),
  each with the same no-op record handler that reads the record's bytes; and by
  OrderedProcessor validating each payload against a pydantic model (`model=`) and against a
  JSON Schema (`schema=`), side by side in the same run;
- payload_validation: µs per payload for validating alone, the processor's way (a pydantic
  TypeAdapter on the bytes; a schema compiled once by fastjsonschema) against Powertools'
  utilities (`parser.parse`, `validation.validate`), which is why the processor calls the
  libraries directly;
- peak_memory: tracemalloc peak while OrderedProcessor handles that batch, against the size
  of the event itself;
- checkpoint_writes: against moto's server, DynamoDB checkpoint writes per batch versus the
  distinct keys in the batch.
"""

from __future__ import annotations

import base64
import json
import logging
import statistics
import time
import tracemalloc
from collections.abc import Callable, Iterator

from pydantic import BaseModel, Field

from processor import OrderedProcessor
from processor.checkpoint import DynamoDBCheckpointStore, MemoryCheckpointStore
from processor.poison import MemoryPoisonSink
from processor.testing import event, kinesis_record

RECORDS = 10_000
KEYS = 1_000
REPEATS = 7
# Payloads per figure of payload_validation; Powertools' validate() compiles the schema on
# every call, so it gets fewer.
VALIDATION_PAYLOADS = 2_000
VALIDATION_PAYLOADS_COMPILING = 100


class BenchEvent(BaseModel):
    """The contract of make_batch's payloads, as a model."""

    key: int = Field(ge=0)
    n: int = Field(ge=0)


BENCH_SCHEMA = {
    "type": "object",
    "properties": {
        "key": {"type": "integer", "minimum": 0},
        "n": {"type": "integer", "minimum": 0},
    },
    "required": ["key", "n"],
}


def make_batch(records: int = RECORDS, keys: int = KEYS, first_sequence: int = 0) -> dict:
    base = 49590338271490256608559692538361571095921575989136588898 + first_sequence
    return event(
        *[
            kinesis_record(f"key-{i % keys:04d}", base + i, {"key": i % keys, "n": i // keys})
            for i in range(records)
        ]
    )


def quiet_logger() -> logging.Logger:
    logger = logging.getLogger("streamline.bench")
    logger.addHandler(logging.NullHandler())
    logger.propagate = False
    return logger


def plain_loop(batch: dict) -> None:
    for record in batch["Records"]:
        base64.b64decode(record["kinesis"]["data"])


def powertools_batch(batch: dict) -> None:
    from aws_lambda_powertools.utilities.batch import (
        BatchProcessor,
        EventType,
        process_partial_response,
    )

    processor = BatchProcessor(event_type=EventType.KinesisDataStreams)
    process_partial_response(
        event=batch,
        record_handler=lambda record: record.kinesis.data_as_bytes(),
        processor=processor,
        context=None,
    )


def ordered(batch: dict, **contract) -> None:
    processor = OrderedProcessor(
        lambda record: record.data,
        checkpoints=MemoryCheckpointStore(),
        poison=MemoryPoisonSink(),
        logger=quiet_logger(),
        **contract,
    )
    processor.process(batch)
    if processor.last_result.applied != len(batch["Records"]):
        raise AssertionError(f"not every record applied: {processor.last_result}")


def ordered_with_model(batch: dict) -> None:
    ordered(batch, model=BenchEvent)


def ordered_with_schema(batch: dict) -> None:
    ordered(batch, schema=BENCH_SCHEMA)


def median_us_per_record(run: Callable[[dict], None], batch: dict) -> float:
    samples = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        run(batch)
        samples.append((time.perf_counter() - started) / len(batch["Records"]) * 1e6)
    return statistics.median(samples)


def bench_overhead(batch: dict) -> dict:
    figures = {
        "plain_loop_us_per_record": median_us_per_record(plain_loop, batch),
        "powertools_batch_processor_us_per_record": median_us_per_record(powertools_batch, batch),
        "ordered_processor_us_per_record": median_us_per_record(ordered, batch),
        "ordered_with_model_us_per_record": median_us_per_record(ordered_with_model, batch),
        "ordered_with_schema_us_per_record": median_us_per_record(ordered_with_schema, batch),
    }
    figures = {name: round(value, 3) for name, value in figures.items()}
    ordered_us = figures["ordered_processor_us_per_record"]
    powertools_us = figures["powertools_batch_processor_us_per_record"]
    figures["ordered_vs_powertools"] = round(ordered_us / powertools_us, 3)
    for contract in ("model", "schema"):
        with_contract = figures[f"ordered_with_{contract}_us_per_record"]
        figures[f"{contract}_cost_us_per_record"] = round(with_contract - ordered_us, 3)
        figures[f"ordered_with_{contract}_vs_powertools"] = round(with_contract / powertools_us, 3)
    return {
        "name": "processor.per_record_overhead",
        "records": RECORDS,
        "keys": KEYS,
        "repeats": REPEATS,
        **figures,
    }


def bench_validation(batch: dict) -> dict:
    from aws_lambda_powertools.utilities.parser import parse
    from aws_lambda_powertools.utilities.validation import validate
    from pydantic import TypeAdapter

    from processor.records import parse_event
    from processor.validation import payload_check

    records = parse_event({"Records": batch["Records"][:VALIDATION_PAYLOADS]})
    payloads = [record.data for record in records]
    texts = [payload.decode() for payload in payloads]
    adapter = TypeAdapter(BenchEvent)
    compiled = payload_check(schema=BENCH_SCHEMA)
    with_model = payload_check(model=BenchEvent)

    def per_payload_us(run: Callable[[], None], count: int) -> float:
        samples = []
        for _ in range(REPEATS):
            started = time.perf_counter()
            run()
            samples.append((time.perf_counter() - started) / count * 1e6)
        return round(statistics.median(samples), 3)

    few = VALIDATION_PAYLOADS_COMPILING
    return {
        "name": "processor.payload_validation",
        "payloads": len(payloads),
        "repeats": REPEATS,
        "json_loads_us": per_payload_us(lambda: [json.loads(p) for p in payloads], len(payloads)),
        "model_type_adapter_validate_json_us": per_payload_us(
            lambda: [adapter.validate_json(p) for p in payloads], len(payloads)
        ),
        "model_processor_check_us": per_payload_us(
            lambda: [with_model(r) for r in records], len(records)
        ),
        "model_powertools_parse_us": per_payload_us(
            lambda: [parse(event=t, model=BenchEvent) for t in texts], len(texts)
        ),
        "schema_processor_check_us": per_payload_us(
            lambda: [compiled(r) for r in records], len(records)
        ),
        "schema_powertools_validate_us": per_payload_us(
            lambda: [validate(event=json.loads(p), schema=BENCH_SCHEMA) for p in payloads[:few]],
            few,
        ),
    }


def bench_memory(batch: dict) -> dict:
    event_bytes = len(json.dumps(batch).encode())
    tracemalloc.start()
    ordered(batch)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "name": "processor.peak_memory",
        "records": RECORDS,
        "event_json_bytes": event_bytes,
        "peak_traced_bytes": peak,
        "peak_vs_event": round(peak / event_bytes, 3),
    }


def bench_checkpoint_writes() -> Iterator[dict]:
    from streamline.emulator import Emulator, emulator_client

    emulator = Emulator.start()
    try:
        client = emulator_client("dynamodb", emulator.endpoint)
        client.create_table(
            TableName="bench-checkpoints",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        for records, keys in ((1_000, 10), (1_000, 100), (1_000, 1_000)):
            store = DynamoDBCheckpointStore("bench-checkpoints", boto3_client=client)
            processor = OrderedProcessor(
                lambda record: None,
                checkpoints=store,
                poison=MemoryPoisonSink(),
                logger=quiet_logger(),
            )
            batch = make_batch(records, keys, first_sequence=records * keys)
            started = time.perf_counter()
            processor.process(batch)
            elapsed_s = time.perf_counter() - started
            yield {
                "name": "processor.checkpoint_writes",
                "endpoint": "moto",
                "records": records,
                "distinct_keys": keys,
                "checkpoint_writes": store.stats.writes,
                "checkpoint_reads": store.stats.reads,
                "batch_seconds": round(elapsed_s, 3),
            }
    finally:
        emulator.stop()


def run() -> Iterator[dict]:
    batch = make_batch()
    yield bench_overhead(batch)
    yield bench_validation(batch)
    yield bench_memory(batch)
    yield from bench_checkpoint_writes()
