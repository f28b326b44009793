"""A fault-injecting HTTP proxy on 127.0.0.1, in front of an AWS endpoint (the emulator).

It forwards every request to the upstream endpoint, after a fixed added latency, and counts
requests by AWS operation (the `X-Amz-Target` header, or the query's `Action`). Benchmarks
use it to measure code at a realistic round trip (moto answers in about a millisecond; AWS in
about ten) and to count the requests a contender makes; it is the one place where faults on
the wire are injected (`Faults`), at seeded rates, as AWS would answer them:

- throttling: HTTP 400 with the service's own code (Kinesis
  `ProvisionedThroughputExceededException`, DynamoDB `ThrottlingException`, ...);
- server errors: HTTP 500 `InternalFailure`;
- a connection dropped before the request reaches the endpoint (nothing happened), or after
  the endpoint answered (it happened, the answer is lost: the case that makes retries
  duplicate a write);
- an outage: for a few seconds, every request that names a given resource (a table's name,
  say) gets HTTP 503 `ServiceUnavailable`.

    python -m streamline.tools.proxy --upstream http://127.0.0.1:5000 --latency-ms 10

prints the proxy's endpoint; point AWS_ENDPOINT_URL (or one service's variant) at it.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import random
import sys
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from streamline.arguments import MAX_PORT, OneLineParser, integer, number, text

# Hop-by-hop headers are the proxy's own business (RFC 9110, section 7.6.1).
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer"}
)


class Fault(StrEnum):
    THROTTLE = "throttle"
    SERVER_ERROR = "server error"
    DROP_BEFORE = "dropped before"  # the endpoint never saw the request
    DROP_AFTER = "dropped after"  # the endpoint acted on it; its answer is lost
    OUTAGE = "outage"


# The code a throttled call of each JSON service answers with (its X-Amz-Target prefix).
# https://docs.aws.amazon.com/kinesis/latest/APIReference/API_PutRecords.html (Errors) and
# https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Programming.Errors.html
THROTTLING_CODES = {
    "Kinesis_20131202": "ProvisionedThroughputExceededException",
    "DynamoDB_20120810": "ThrottlingException",
    "DynamoDBStreams_20120810": "LimitExceededException",
}
DEFAULT_THROTTLING_CODE = "ThrottlingException"


@dataclass
class Faults:
    """What to inject, per request, at these rates (0 to 1), drawn from one seeded generator
    (requests served side by side draw in the order they arrive). `match`: only requests
    whose operation, path or body contains this text (a table name, say) are touched."""

    throttle_rate: float = 0.0
    server_error_rate: float = 0.0
    drop_before_rate: float = 0.0
    drop_after_rate: float = 0.0
    seed: int = 0
    match: str | None = None

    def __post_init__(self) -> None:
        rates = (
            self.throttle_rate,
            self.server_error_rate,
            self.drop_before_rate,
            self.drop_after_rate,
        )
        if any(not 0 <= rate <= 1 for rate in rates) or sum(rates) > 1:
            raise ValueError(f"fault rates must be from 0 to 1 and add up to at most 1: {rates}")
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()

    def draw(self, request_text: str) -> Fault | None:
        if self.match is not None and self.match not in request_text:
            return None
        with self._lock:
            roll = self._rng.random()
        for fault, rate in (
            (Fault.THROTTLE, self.throttle_rate),
            (Fault.SERVER_ERROR, self.server_error_rate),
            (Fault.DROP_BEFORE, self.drop_before_rate),
            (Fault.DROP_AFTER, self.drop_after_rate),
        ):
            if roll < rate:
                return fault
            roll -= rate
        return None


@dataclass
class ProxyStats:
    requests: Counter = field(default_factory=Counter)  # by operation
    faults: Counter = field(default_factory=Counter)  # injected, by Fault
    fault_times: list = field(default_factory=list)  # (wall time, Fault) of each injection
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, operation: str) -> None:
        with self.lock:
            self.requests[operation] += 1

    def count_fault(self, fault: Fault) -> None:
        with self.lock:
            self.faults[fault] += 1
            self.fault_times.append((time.time(), fault))

    def total(self) -> int:
        with self.lock:
            return sum(self.requests.values())

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.faults.clear()
            self.fault_times.clear()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        # A client that went away mid-request or mid-answer (a killed process, an SDK call
        # that timed out), or an upstream that hung up, ends that one exchange, as a dropped
        # connection does: not the proxy's error, no traceback for it.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class Proxy:
    """`with Proxy(upstream, latency_ms=10) as proxy:` serves on `proxy.endpoint` until exit."""

    def __init__(
        self,
        upstream: str,
        latency_ms: float = 0.0,
        port: int = 0,
        faults: Faults | None = None,
    ) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        if parsed.scheme != "http" or not parsed.hostname:
            raise ValueError(f"upstream must be an http:// endpoint, got {upstream!r}")
        if not math.isfinite(latency_ms) or latency_ms < 0:
            raise ValueError(f"latency_ms must be a finite number at least 0, got {latency_ms}")
        self.upstream_host = parsed.hostname
        self.upstream_port = parsed.port or 80
        self.latency_s = latency_ms / 1000
        self.faults = faults or Faults()
        self.stats = ProxyStats()
        self._outage: tuple[float, str | None] = (0.0, None)  # (until, match)
        self._server = _Server(("127.0.0.1", port), self._handler_class())
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> Proxy:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def outage(self, seconds: float, match: str | None = None) -> None:
        """For `seconds` from now, answer 503 to every request that contains `match` (all
        requests when None), as an unreachable resource would."""
        self._outage = (time.monotonic() + seconds, match)

    def _fault_for(self, request_text: str) -> Fault | None:
        until, match = self._outage
        if time.monotonic() < until and (match is None or match in request_text):
            return Fault.OUTAGE
        return self.faults.draw(request_text)

    def __enter__(self) -> Proxy:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self
        local = threading.local()  # one keep-alive upstream connection per serving thread

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body leave in two writes: with Nagle's algorithm on, the client's
            # delayed ACK would add ~40 ms to every response.
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base's name)
                pass  # a benchmark's thousands of requests are not worth a line each

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                operation = _operation(self.headers, self.path, body)
                proxy.stats.count(operation)
                if proxy.latency_s:
                    time.sleep(proxy.latency_s)
                text = f"{operation} {self.path} " + (body or b"").decode("utf-8", "replace")
                fault = proxy._fault_for(text)
                if fault is not None:
                    proxy.stats.count_fault(fault)
                if fault is Fault.DROP_BEFORE:
                    self.close_connection = True  # no answer at all
                    return
                if fault in _ERROR_ANSWERS:
                    self._answer_error(fault)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                response = self._upstream(self.command, self.path, body, headers)
                payload = response.read()
                if fault is Fault.DROP_AFTER:
                    self.close_connection = True  # the endpoint acted; the answer is lost
                    return
                self.send_response(response.status, response.reason)
                for name, value in response.getheaders():
                    if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _answer_error(self, fault: Fault) -> None:
                """The error as the service's protocol spells it, so the SDK parses its code."""
                target = self.headers.get("X-Amz-Target", "")
                status, code = _ERROR_ANSWERS[fault]
                if fault is Fault.THROTTLE:
                    code = THROTTLING_CODES.get(target.split(".")[0], DEFAULT_THROTTLING_CODE)
                message = f"injected by streamline's proxy: {fault}"
                if target or "json" in self.headers.get("Content-Type", ""):
                    payload = json.dumps({"__type": code, "message": message}).encode()
                    content_type = self.headers.get("Content-Type") or "application/json"
                else:  # the query protocol's XML
                    payload = (
                        f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code>"
                        f"<Message>{message}</Message></Error></ErrorResponse>"
                    ).encode()
                    content_type = "text/xml"
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("x-amzn-ErrorType", code)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _upstream(self, method, path, body, headers) -> http.client.HTTPResponse:
                for attempt in (1, 2):  # a kept-alive connection the upstream closed: redial
                    connection = getattr(local, "connection", None)
                    if connection is None:
                        connection = http.client.HTTPConnection(
                            proxy.upstream_host, proxy.upstream_port, timeout=60
                        )
                        local.connection = connection
                    try:
                        connection.request(method, path, body=body, headers=headers)
                        return connection.getresponse()
                    except (ConnectionError, http.client.HTTPException):
                        connection.close()
                        local.connection = None
                        if attempt == 2:
                            raise
                raise AssertionError("unreachable")

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

        return Handler


_ERROR_ANSWERS = {
    Fault.THROTTLE: (400, DEFAULT_THROTTLING_CODE),
    Fault.SERVER_ERROR: (500, "InternalFailure"),
    Fault.OUTAGE: (503, "ServiceUnavailable"),
}


def _operation(headers, path: str, body: bytes | None) -> str:
    """The AWS operation a request calls: JSON protocols name it in X-Amz-Target, query
    protocols in an `Action` parameter."""
    target = headers.get("X-Amz-Target")
    if target:
        return target.rsplit(".", 1)[-1]
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
    if (
        not query.get("Action")
        and body
        and headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded")
    ):
        query = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
    return (query.get("Action") or ["(other)"])[0]


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="python -m streamline.tools.proxy",
        description="Forward to an AWS endpoint with added latency; print the endpoint.",
    )
    parser.add_argument("--upstream", type=text, required=True, help="the endpoint to forward to")
    parser.add_argument("--latency-ms", type=number(0), default=10.0, help="added per request")
    parser.add_argument(
        "--port", type=integer(0, MAX_PORT), default=0, help="default (0): a free port"
    )
    parser.add_argument("--throttle-rate", type=number(0, 1), default=0.0, help="share throttled")
    parser.add_argument("--error-rate", type=number(0, 1), default=0.0, help="share answered 500")
    parser.add_argument(
        "--drop-rate",
        type=number(0, 1),
        default=0.0,
        help="share dropped, half before, half after",
    )
    parser.add_argument("--seed", type=integer(), default=0, help="for the fault draws")
    parser.add_argument("--match", type=text, help="inject only into requests containing this text")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # bad arguments: one line, exit 2
    try:
        faults = Faults(
            throttle_rate=args.throttle_rate,
            server_error_rate=args.error_rate,
            drop_before_rate=args.drop_rate / 2,
            drop_after_rate=args.drop_rate / 2,
            seed=args.seed,
            match=args.match,
        )
        proxy = Proxy(args.upstream, args.latency_ms, args.port, faults)
    except ValueError as exc:  # rates adding up to more than 1, an upstream that is not http://
        parser.error(str(exc))
    except OSError as exc:  # the port is taken, or not ours to bind
        print(f"{parser.prog}: cannot listen on 127.0.0.1:{args.port}: {exc}", file=sys.stderr)
        return 2
    with proxy:
        print(proxy.endpoint, flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
