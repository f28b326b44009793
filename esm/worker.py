"""The function's process: imports the handler once and serves invocations, like a warm
Lambda execution environment.

Run as ``python -m esm.worker HANDLER`` by ``esm/invoker.py`` with the function's environment
and ``PYTHONPATH`` set to the code directory. It speaks length-prefixed JSON frames on a
private copy of stdout; the handler's own prints go to stderr, as they would go to CloudWatch.

After importing the handler it sends ``{"ready": true}``. Each request is two frames:
``{"requestId", "deadlineMs"}`` then the event payload as sent.
The reply is one frame: ``{"ok": true, "response": ...}`` or ``{"ok": false, "errorType",
"errorMessage", "stackTrace"}`` (what Lambda reports for an unhandled error).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import traceback
from typing import Any, BinaryIO

from esm.framing import read_frame, write_frame


def _context(request: dict[str, Any]):
    """Lambda's context object for one request, named after the function's environment."""
    from processor.events import LambdaContext  # imported by serve(), after the handler

    return LambdaContext(
        deadline_s=request["deadlineMs"] / 1000,
        aws_request_id=request["requestId"],
        function_name=os.environ.get("AWS_LAMBDA_FUNCTION_NAME", ""),
        function_version=os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        invoked_function_arn=os.environ.get("ESM_FUNCTION_ARN", ""),
        memory_limit_in_mb=int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")),
        log_group_name=os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", ""),
        log_stream_name=os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", ""),
    )


def _error(exc: BaseException, error_type: str | None = None) -> dict[str, Any]:
    return {
        "ok": False,
        "errorType": error_type or type(exc).__name__,
        "errorMessage": str(exc),
        "stackTrace": traceback.format_exception(exc),
    }


def _load_handler(handler: str):
    module_name, _, function_name = handler.rpartition(".")
    module = importlib.import_module(module_name)
    return getattr(module, function_name)


def serve(handler_name: str, requests: BinaryIO, replies: BinaryIO) -> None:
    try:
        handler = _load_handler(handler_name)
        init_error = None
    except Exception as exc:  # reported on every invocation, as Lambda does
        handler = None
        init_error = _error(exc, "Runtime.ImportModuleError")
    # Importing `processor` costs ~0.1 s (its __init__ loads boto3): after the handler, whose
    # own imports come first as on Lambda (and usually include it), and within init.
    import processor.events  # noqa: F401

    write_frame(replies, b'{"ready": true}')  # init is done: the runner starts the clock now
    while True:
        meta = read_frame(requests)
        payload = read_frame(requests) if meta is not None else None
        if payload is None:
            return  # the runner closed our stdin: shut down
        request = json.loads(meta)
        if init_error is not None:
            reply = init_error
        else:
            context = _context(request)
            try:
                response = handler(json.loads(payload), context)
            except Exception as exc:
                reply = _error(exc)
                # What Lambda's Python runtime logs for an unhandled error.
                print(f"[ERROR] {reply['errorType']}: {reply['errorMessage']}", file=sys.stderr)
                traceback.print_exception(exc, file=sys.stderr)
            else:
                try:
                    encoded = json.dumps({"ok": True, "response": response}).encode()
                except (TypeError, ValueError) as exc:
                    reply = _error(exc, "Runtime.MarshalError")
                else:
                    write_frame(replies, encoded)
                    continue
        write_frame(replies, json.dumps(reply, default=str).encode())


def main(argv: list[str]) -> int:
    # The protocol gets a private copy of stdout; fd 1 becomes stderr for the handler's prints.
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    serve(argv[0], sys.stdin.buffer, replies)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
