"""A fault-injecting HTTP proxy on 127.0.0.1, in front of an AWS endpoint (the emulator).

It forwards every request to the upstream endpoint, after a fixed added latency, and counts
requests by AWS operation (the `X-Amz-Target` header, or the query's `Action`). Benchmarks
use it to measure code at a realistic round trip (moto answers in about a millisecond; AWS in
about ten) and to count the requests a contender makes; it is the one place where faults on
the wire are injected.

    python -m streamline.tools.proxy --upstream http://127.0.0.1:5000 --latency-ms 10

prints the proxy's endpoint; point AWS_ENDPOINT_URL (or one service's variant) at it.
"""

from __future__ import annotations

import argparse
import http.client
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Hop-by-hop headers are the proxy's own business (RFC 9110, section 7.6.1).
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer"}
)


@dataclass
class ProxyStats:
    requests: Counter = field(default_factory=Counter)  # by operation
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, operation: str) -> None:
        with self.lock:
            self.requests[operation] += 1

    def total(self) -> int:
        with self.lock:
            return sum(self.requests.values())

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()


class Proxy:
    """`with Proxy(upstream, latency_ms=10) as proxy:` serves on `proxy.endpoint` until exit."""

    def __init__(self, upstream: str, latency_ms: float = 0.0, port: int = 0) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        if parsed.scheme != "http" or not parsed.hostname:
            raise ValueError(f"upstream must be an http:// endpoint, got {upstream!r}")
        if latency_ms < 0:
            raise ValueError(f"latency_ms must be at least 0, got {latency_ms}")
        self.upstream_host = parsed.hostname
        self.upstream_port = parsed.port or 80
        self.latency_s = latency_ms / 1000
        self.stats = ProxyStats()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler_class())
        self._server.daemon_threads = True
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
                proxy.stats.count(_operation(self.headers, self.path, body))
                if proxy.latency_s:
                    time.sleep(proxy.latency_s)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                response = self._upstream(self.command, self.path, body, headers)
                payload = response.read()
                self.send_response(response.status, response.reason)
                for name, value in response.getheaders():
                    if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                        self.send_header(name, value)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m streamline.tools.proxy",
        description="Forward to an AWS endpoint with added latency; print the endpoint.",
    )
    parser.add_argument("--upstream", required=True, help="the endpoint to forward to")
    parser.add_argument("--latency-ms", type=float, default=10.0, help="added per request")
    parser.add_argument("--port", type=int, default=0, help="default: a free port")
    args = parser.parse_args(argv)
    try:
        proxy = Proxy(args.upstream, args.latency_ms, args.port)
    except ValueError as exc:
        parser.error(str(exc))
    with proxy:
        print(proxy.endpoint, flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
