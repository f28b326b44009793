"""Payloads never reach the logs above DEBUG: a run that applies, fails, parks and meets
unparseable records of both sources, logged by Powertools at INFO, shows no payload."""

from __future__ import annotations

import base64
import json

from aws_lambda_powertools import Logger

from processor import OrderedProcessor
from processor.checkpoint import MemoryCheckpointStore
from processor.poison import MemoryPoisonSink
from processor.testing import dynamodb_record, event, kinesis_record, kpl_aggregate

MARKER = "SECRET-PAYLOAD-7f3a"


def test_no_payload_is_logged_above_debug(capsys):
    def apply(record):
        if record.json().get("fail"):
            raise ValueError(f"record {record.sequence_number} failed")  # no payload in it

    processor = OrderedProcessor(
        apply,
        checkpoints=MemoryCheckpointStore(),
        poison=MemoryPoisonSink(),
        max_attempts=1,
        logger=Logger(service="streamline-test", level="INFO"),
    )
    malformed = dynamodb_record({"pk": "a"}, 7, new_image={"pk": "a", "v": MARKER})
    malformed["dynamodb"]["NewImage"]["v"] = {"BOGUS": MARKER}
    bad_kpl = bytearray(kpl_aggregate([("k", MARKER.encode())]))
    bad_kpl[-1] ^= 0xFF
    records = [
        kinesis_record("k", 1, {"secret": MARKER}),
        kinesis_record("k", 2, {"secret": MARKER, "fail": True}),
        kinesis_record("k", 3, bytes(bad_kpl)),
        kinesis_record("k", 4, MARKER.encode()),  # not JSON: json() raises with the text
        malformed,
    ]
    records[3]["kinesis"]["data"] = base64.b64encode(MARKER.encode()).decode()

    processor.process(event(*records[:4]))
    processor.process(event(records[4]))

    logged = capsys.readouterr()
    lines = [json.loads(line) for line in logged.out.splitlines() if line.startswith("{")]
    assert any(line.get("outcome") == "parked" for line in lines)  # the run did park
    output = logged.out + logged.err
    assert MARKER not in output
    assert records[3]["kinesis"]["data"] not in output  # nor the payload in base64
