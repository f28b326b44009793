"""One invocation, explained: what ``python -m esm invoke`` does.

Runs a handler once on an event from a file (or stdin) in a worker process, with Lambda's
timeout, environment and context (``esm/invoker.py``), prints the response, then says what
Lambda's stream mapping would do with it, by the same rules the runner follows
(``esm/rules.py``): checkpoint, retry from a record, retry the whole batch, bisect.
https://docs.aws.amazon.com/lambda/latest/dg/services-kinesis-errors.html
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from esm.invoker import FunctionWorker, Invocation, WorkerDied
from esm.rules import MAX_PAYLOAD_BYTES, InvalidBatchResponse, bisect, parse_batch_item_failures
from esm.settings import FunctionSettings
from processor.aws import parse_arn

# What the worker reports when the handler's module or function cannot be loaded.
IMPORT_ERROR_TYPE = "Runtime.ImportModuleError"


class BadInput(ValueError):
    """The event or the handler cannot be used at all: one line says why (exit 2)."""


@dataclass(frozen=True)
class Mapping:
    """The mapping settings that decide what a response means."""

    report_batch_item_failures: bool = False
    bisect_batch_on_function_error: bool = False


# The batch item identifier of a record (its sequence number), by event source.
_SEQUENCE_NUMBER = {
    "aws:kinesis": ("kinesis", "sequenceNumber"),
    "aws:dynamodb": ("dynamodb", "SequenceNumber"),
}


def read_event(path: str, stdin: TextIO) -> tuple[str, dict[str, Any]]:
    """The event's text and its JSON; ``-`` reads stdin. BadInput if it is not a batch."""
    where = "stdin" if path == "-" else path
    try:
        text = stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"cannot read the event from {where}: {exc}") from None
    try:
        event = json.loads(text)
    except ValueError as exc:
        raise BadInput(f"the event in {where} is not JSON: {exc}") from None
    if not isinstance(event, dict) or not isinstance(event.get("Records"), list):
        raise BadInput(f"the event in {where} is not a stream batch: no 'Records' list")
    if not event["Records"]:
        raise BadInput(f"the event in {where} has no records: Lambda never sends an empty batch")
    size = len(text.encode("utf-8"))
    if size > MAX_PAYLOAD_BYTES:
        raise BadInput(
            f"the event in {where} is {size} bytes: Lambda's payload limit is {MAX_PAYLOAD_BYTES}"
        )
    return text, event


def item_identifiers(event: dict[str, Any]) -> list[str]:
    """The batch's item identifiers in order: each record's sequence number."""
    identifiers = []
    for index, record in enumerate(event["Records"], 1):
        source = record.get("eventSource") if isinstance(record, dict) else None
        path = _SEQUENCE_NUMBER.get(source)
        if path is None:
            raise BadInput(f"record {index}: eventSource {source!r} is not aws:kinesis/dynamodb")
        inner, name = path
        sequence_number = (record.get(inner) or {}).get(name)
        if not isinstance(sequence_number, str) or not sequence_number:
            raise BadInput(f"record {index} has no {inner}.{name}")
        identifiers.append(sequence_number)
    return identifiers


def function_for(handler: str, event: dict[str, Any], **settings: Any) -> FunctionSettings:
    """A function named after the event's region and account (us-east-1 when it has none)."""
    first = event["Records"][0]
    region, account = "us-east-1", "000000000000"
    try:
        arn = parse_arn(first.get("eventSourceARN", ""))
        region, account = arn.region, arn.account or account
    except ValueError:
        pass
    name = settings.pop("name", "esm-local")
    return FunctionSettings(
        name=name,
        arn=f"arn:aws:lambda:{region}:{account}:function:{name}",
        handler=handler,
        **settings,
    )


def invoke_once(function: FunctionSettings, code_dir: Path, payload: str) -> Invocation:
    """One invocation in a fresh worker, stopped afterwards. BadInput if the handler does
    not load (its module or function missing, or its import failing)."""
    try:
        worker = FunctionWorker(function, code_dir)
    except WorkerDied:
        raise BadInput(
            f"handler {function.handler} did not initialise: its process exited or took "
            "longer than the init timeout"
        ) from None
    try:
        invocation = worker.invoke(payload, function.timeout_s)
    finally:
        worker.stop()
    error = invocation.error
    if error is not None and error.error_type == IMPORT_ERROR_TYPE:
        raise BadInput(f"handler {function.handler} does not import: {error.message}")
    return invocation


def response_of(invocation: Invocation) -> Any:
    """What Lambda's Invoke returns: the handler's response, or the error object."""
    if invocation.error is None:
        return invocation.response
    return {"errorType": invocation.error.error_type, "errorMessage": invocation.error.message}


def explain(invocation: Invocation, identifiers: Sequence[str], mapping: Mapping) -> list[str]:
    """What Lambda's stream mapping does with this outcome, in sentences naming records."""
    count = len(identifiers)
    first, last = identifiers[0], identifiers[-1]
    error = invocation.error
    if error is not None:
        kind = error.kind.value
        named = kind if error.error_type == kind else f"{kind}: {error.error_type}"
        lines = [
            f"function error ({named}: {error.message}): "
            f"the whole batch of {_records(count)} is retried from {first}, until it succeeds "
            "or MaximumRetryAttempts / MaximumRecordAgeInSeconds run out (then it goes to the "
            "on-failure destination)"
        ]
        lines.append(_bisect_line(identifiers, mapping.bisect_batch_on_function_error))
        return lines
    response = invocation.response
    if not mapping.report_batch_item_failures:
        line = (
            f"the function returned: all {_records(count)} are done, "
            f"the checkpoint moves past {last}"
        )
        if isinstance(response, dict) and response.get("batchItemFailures"):
            line += (
                " (ReportBatchItemFailures is off, so batchItemFailures is not read: "
                "pass --report-batch-item-failures)"
            )
        return [line]
    try:
        failed_from = parse_batch_item_failures(response, identifiers)
    except InvalidBatchResponse as exc:
        return [
            f"invalid batch response ({exc}): the whole batch of {_records(count)} is retried "
            f"from {first} (functionError: null; the function returned, so it is not bisected)"
        ]
    if failed_from is None:
        return [f"all {_records(count)} succeeded: the checkpoint moves past {last}"]
    named = len(response["batchItemFailures"])
    lowest = "" if named == 1 else f" (the lowest of the {named} named)"
    failed = identifiers[failed_from]
    if failed_from == 0:
        done = "nothing is checkpointed"
    else:
        before = (
            "the record before it is" if failed_from == 1 else f"the {failed_from} before it are"
        )
        done = f"{before} checkpointed (the checkpoint moves past {identifiers[failed_from - 1]})"
    return [
        f"batchItemFailures names {failed}{lowest}, record {failed_from + 1} of {count}: "
        f"records from it on ({count - failed_from}) are retried, {done}"
    ]


def _bisect_line(identifiers: Sequence[str], enabled: bool) -> str:
    if len(identifiers) < 2:
        return "a batch of one record cannot be bisected: it is retried as it is"
    first, second = bisect(identifiers)
    halves = (
        f"{len(first)} + {len(second)} ({_span(first)}, then {_span(second)}; "
        "the first half is settled before the second)"
    )
    if enabled:
        return f"with BisectBatchOnFunctionError it is split into {halves}"
    return f"with --bisect-batch-on-function-error it would be split into {halves}"


def _span(identifiers: Sequence[str]) -> str:
    if len(identifiers) == 1:
        return identifiers[0]
    return f"{identifiers[0]}..{identifiers[-1]}"


def _records(count: int) -> str:
    return f"{count} record" if count == 1 else f"{count} records"


def command(args, stdin: TextIO | None = None) -> int:
    """`python -m esm invoke`: the response (JSON) on stdout, then what Lambda would do with
    it on stderr. Exit 0 when the function returned, 1 on a function error, 2 on bad input."""
    try:
        code_dir = args.code_dir.resolve()
        if not code_dir.is_dir():
            raise BadInput(f"--code-dir {args.code_dir} is not a directory")
        payload, event = read_event(args.event, stdin or sys.stdin)
        identifiers = item_identifiers(event)
        environment = dict(args.env)
        function = function_for(
            args.handler,
            event,
            name=args.function_name,
            timeout_s=args.timeout,
            memory_mb=args.memory_size,
            environment=environment,
        )
        invocation = invoke_once(function, code_dir, payload)
    except BadInput as exc:
        print(f"[esm] {exc}", file=sys.stderr)
        return 2
    print(json.dumps(response_of(invocation), indent=2), flush=True)
    mapping = Mapping(args.report_batch_item_failures, args.bisect_batch_on_function_error)
    for line in explain(invocation, identifiers, mapping):
        print(f"[esm] {line}", file=sys.stderr)
    return 1 if invocation.error is not None else 0
