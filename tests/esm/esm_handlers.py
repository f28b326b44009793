"""Handlers the runner imports in the conformance tests (``--code-dir tests/esm``).

Each one appends what it saw to the JSON-lines file named by ``ESM_TEST_LOG`` (the
function's environment), so a test can read the invocations back: request id, worker pid,
sequence numbers, partition keys, decoded data. The ones at the end, for
``python -m esm invoke``, log nothing: they act on the demo's poison events.
"""

from __future__ import annotations

import base64
import json
import os
import time


def _observe(event, context, **extra) -> list[str]:
    records = event["Records"]
    data = []
    for record in records:
        if "kinesis" in record:
            data.append(base64.b64decode(record["kinesis"]["data"]).decode())
        else:
            image = record["dynamodb"].get("NewImage") or record["dynamodb"].get("Keys")
            data.append(json.dumps(image, sort_keys=True))
    entry = {
        "requestId": context.aws_request_id,
        "pid": os.getpid(),
        "start": time.time(),
        "sequenceNumbers": [_sequence_number(r) for r in records],
        "keys": [_key(r) for r in records],
        "shards": [r["eventID"].split(":")[0] for r in records if "kinesis" in r],
        "data": data,
        **extra,
    }
    with open(os.environ["ESM_TEST_LOG"], "a") as log:
        log.write(json.dumps(entry) + "\n")
    return data


def _is_bad(data: str) -> bool:
    """Kinesis data starting with ``bad``, or a DynamoDB image with the string ``bad``."""
    return data.startswith("bad") or '"bad"' in data


def _sequence_number(record) -> str:
    if "kinesis" in record:
        return record["kinesis"]["sequenceNumber"]
    return record["dynamodb"]["SequenceNumber"]


def _key(record) -> str:
    if "kinesis" in record:
        return record["kinesis"]["partitionKey"]
    return json.dumps(record["dynamodb"]["Keys"], sort_keys=True)


def record(event, context):
    """Succeeds; keeps the first record whole so tests can check the event's shape."""
    first = event["Records"][0]
    _observe(event, context, first=first, sleep=float(os.environ.get("ESM_TEST_SLEEP", "0")))
    time.sleep(float(os.environ.get("ESM_TEST_SLEEP", "0")))
    return {"batchItemFailures": []}


def fail_on_bad(event, context):
    """Raises when any record's data starts with ``bad``."""
    data = _observe(event, context)
    if any(_is_bad(d) for d in data):
        raise ValueError("bad record in batch")
    return None


def report_bad(event, context):
    """Reports every record whose data starts with ``bad`` as a batch item failure."""
    data = _observe(event, context)
    failures = [
        {"itemIdentifier": _sequence_number(r)}
        for r, d in zip(event["Records"], data, strict=True)
        if _is_bad(d)
    ]
    return {"batchItemFailures": list(reversed(failures))}


def unknown_identifier_on_bad(event, context):
    """Reports an identifier that is not in the batch when any record is bad."""
    data = _observe(event, context)
    if any(_is_bad(d) for d in data):
        return {"batchItemFailures": [{"itemIdentifier": "not-in-this-batch"}]}
    return {}


def sleep_on_slow(event, context):
    """Sleeps past any short timeout when a record's data starts with ``slow``."""
    data = _observe(event, context)
    if any(d.startswith("slow") for d in data):
        time.sleep(30)
    return None


def crash_on_bad(event, context):
    """Kills its own process (a runtime crash) when a record is bad."""
    data = _observe(event, context)
    if any(_is_bad(d) for d in data):
        os._exit(3)
    return None


def context_echo(event, context):
    """Logs the Lambda context and environment it was given."""
    _observe(
        event,
        context,
        lambda_context={
            "aws_request_id": context.aws_request_id,
            "function_name": context.function_name,
            "function_version": context.function_version,
            "invoked_function_arn": context.invoked_function_arn,
            "memory_limit_in_mb": context.memory_limit_in_mb,
            "remaining_ms": context.get_remaining_time_in_millis(),
            "log_group_name": context.log_group_name,
        },
        env={k: os.environ.get(k) for k in ("GREETING", "AWS_LAMBDA_FUNCTION_NAME", "_HANDLER")},
    )
    return None


def sum_window(event, context):
    """Tumbling windows: adds the records' numbers (Kinesis data ``"3"``, a DynamoDB item's
    ``n``) to ``state["total"]``. ``flaky`` fails the first invocation that holds it;
    ``big`` pads the state past 1 MB."""
    fields = ("window", "state", "shardId", "eventSourceARN")
    flags = ("isFinalInvokeForWindow", "isWindowTerminatedEarly")
    data = _observe(event, context, **{k: event.get(k) for k in fields + flags})
    marker = os.environ["ESM_TEST_LOG"] + ".failed"
    if "flaky" in data and not os.path.exists(marker):
        open(marker, "w").close()
        raise ValueError("flaky record, first attempt")
    total = event["state"].get("total", 0) + sum(_number(d) for d in data)
    state = {"total": total}
    if "big" in data:
        state["padding"] = "x" * (1024 * 1024)
    return {"state": state, "batchItemFailures": []}


def _number(data: str) -> int:
    if data.isdigit():
        return int(data)
    if data.startswith("{"):
        return int(json.loads(data).get("n", {}).get("N", 0))
    return 0


# --- for `python -m esm invoke` (no ESM_TEST_LOG needed) ---------------------------------


def _poisoned(event) -> list[str]:
    """The sequence numbers of the records holding a demo poison event, in order."""
    from processor.records import parse_event

    poisoned = []
    for item in parse_event(event):
        body = item.json() if item.source == "kinesis" else item.new_image
        if body.get("poison") and item.sequence_number not in poisoned:
            poisoned.append(item.sequence_number)
    return poisoned


def report_poison(event, context):
    """Reports every poisoned record as a batch item failure (last first)."""
    return {"batchItemFailures": [{"itemIdentifier": s} for s in reversed(_poisoned(event))]}


def raise_on_poison(event, context):
    if _poisoned(event):
        raise ValueError("poison in batch")
    return None


def exit_on_poison(event, context):
    if _poisoned(event):
        os._exit(3)
    return None


def sleep_on_poison(event, context):
    if _poisoned(event):
        time.sleep(30)
    return None


def empty_identifier(event, context):
    return {"batchItemFailures": [{"itemIdentifier": ""}]}


def echo_environment(event, context):
    """Returns what it was given: the context's fields and one environment variable."""
    return {
        "records": len(event["Records"]),
        "functionName": context.function_name,
        "invokedFunctionArn": context.invoked_function_arn,
        "remainingMs": context.get_remaining_time_in_millis(),
        "greeting": os.environ.get("GREETING"),
    }
