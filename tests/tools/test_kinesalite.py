"""streamline/tools/kinesalite.py: kinesalite outlives clients that go away mid-request.

kinesalite 3.3.3 rethrows the `aborted` error (ECONNRESET) of a request whose client went
away while sending it, so an ESM runner killed mid-request used to take Kinesis down with it.
Each test makes clients go away several times, then asks kinesalite for real work via boto3.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from botocore.config import Config
from botocore.exceptions import ConnectionError as BotocoreConnectionError

from streamline.emulator import emulator_client
from streamline.tools.kinesalite import Kinesalite

pytestmark = pytest.mark.integration

TIMES = 5  # clients that go away, per test
# A dead kinesalite should fail the call at once, not after botocore's retries.
ONE_ATTEMPT = Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=30)


@pytest.fixture
def log_path(tmp_path) -> Path:
    return tmp_path / "kinesalite.log"


@pytest.fixture
def kinesalite(log_path) -> Iterator[Kinesalite]:
    with Kinesalite.start(log_path=log_path) as kinesalite:
        yield kinesalite


def _kinesis(kinesalite: Kinesalite):
    return emulator_client("kinesis", kinesalite.endpoint, config=ONE_ATTEMPT)


def _head(kinesalite: Kinesalite, operation: str, content_length: int, *extra: str) -> bytes:
    """A Kinesis request's head as a client sends it (kinesalite checks that the signature's
    parts are there, not what they say)."""
    lines = [
        "POST / HTTP/1.1",
        f"Host: {kinesalite.endpoint.removeprefix('http://')}",
        "Content-Type: application/x-amz-json-1.1",
        f"X-Amz-Target: Kinesis_20131202.{operation}",
        "X-Amz-Date: 20240101T000000Z",
        "Authorization: AWS4-HMAC-SHA256 Credential=testing/20240101/us-east-1/kinesis/"
        "aws4_request, SignedHeaders=host;x-amz-date, Signature=0",
        f"Content-Length: {content_length}",
        *extra,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _connect(kinesalite: Kinesalite, receive_buffer: int | None = None) -> socket.socket:
    host, port = kinesalite.endpoint.removeprefix("http://").split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer:  # before connect, so the window we advertise stays small
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(10)
    sock.connect((host, int(port)))
    return sock


def _read_head(sock: socket.socket) -> bytes:
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(256)
        if not chunk:
            break
        head += chunk
    return head


def reset(sock: socket.socket) -> None:
    """Close with an RST, as the kernel does for a killed process with unread data."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def close(sock: socket.socket) -> None:
    """Close with a FIN, as the kernel does for a killed process with nothing unread."""
    sock.close()


def _create_stream(kinesis, name: str) -> str:
    kinesis.create_stream(StreamName=name, ShardCount=1)
    for _ in range(100):
        description = kinesis.describe_stream(StreamName=name)["StreamDescription"]
        if description["StreamStatus"] == "ACTIVE":
            return description["Shards"][0]["ShardId"]
        time.sleep(0.05)
    raise TimeoutError(f"stream {name} not active")


def _records(kinesis, name: str, shard_id: str) -> list[dict]:
    iterator = kinesis.get_shard_iterator(
        StreamName=name, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    return kinesis.get_records(ShardIterator=iterator)["Records"]


@contextlib.contextmanager
def outliving_its_clients(log_path: Path) -> Iterator[None]:
    """Fail with kinesalite's own output when it is no longer there to talk to."""
    try:
        yield
    except (ConnectionError, BotocoreConnectionError) as exc:
        pytest.fail(f"kinesalite is gone ({exc}); its output:\n{log_path.read_text()}")


def assert_still_serves_kinesis(kinesalite: Kinesalite) -> None:
    kinesis = _kinesis(kinesalite)
    shard_id = _create_stream(kinesis, "after-the-faults")
    kinesis.put_record(StreamName="after-the-faults", PartitionKey="k", Data=b"still here")
    records = _records(kinesis, "after-the-faults", shard_id)
    assert [r["Data"] for r in records] == [b"still here"]


@pytest.mark.parametrize("hang_up", [reset, close], ids=["reset", "close"])
def test_a_client_going_away_while_sending_its_body_leaves_kinesalite_serving(
    kinesalite: Kinesalite, log_path: Path, hang_up: Callable[[socket.socket], None]
):
    body = json.dumps({"Limit": 10}).encode()
    with outliving_its_clients(log_path):
        for _ in range(TIMES):
            # Given a request whose head kinesalite has taken: `Expect: 100-continue` makes
            # Node answer "100 Continue" as it hands the request to kinesalite's handler.
            sock = _connect(kinesalite)
            head = _head(kinesalite, "ListStreams", len(body) + 100, "Expect: 100-continue")
            sock.sendall(head)
            assert _read_head(sock).startswith(b"HTTP/1.1 100 Continue")
            # When the client sends part of the body and goes away.
            sock.sendall(body)
            hang_up(sock)

        # Then kinesalite said so and goes on serving.
        assert_still_serves_kinesis(kinesalite)
    assert log_path.read_text().count("client went away mid-request (ECONNRESET") == TIMES


def test_a_client_reset_while_kinesalite_answers_leaves_it_serving(
    kinesalite: Kinesalite, log_path: Path
):
    # Node 20 closes a request once its body is in, so this did not stop kinesalite under a
    # plain `node -e` launch either; it keeps the launcher honest on a Node that does.
    # Given an answer of about 5 MB, far more than the client's socket buffers take.
    kinesis = _kinesis(kinesalite)
    shard_id = _create_stream(kinesis, "large-answer")
    kinesis.put_records(
        StreamName="large-answer",
        Records=[{"PartitionKey": str(i), "Data": bytes(500_000)} for i in range(8)],
    )
    with outliving_its_clients(log_path):
        for _ in range(TIMES):
            iterator = kinesis.get_shard_iterator(
                StreamName="large-answer", ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            body = json.dumps({"ShardIterator": iterator}).encode()
            sock = _connect(kinesalite, receive_buffer=4096)
            sock.sendall(_head(kinesalite, "GetRecords", len(body)) + body)
            # When the client resets once the answer has begun.
            assert sock.recv(1) == b"H"
            reset(sock)

        # Then kinesalite goes on serving.
        assert_still_serves_kinesis(kinesalite)


def test_any_other_error_still_stops_kinesalite_with_its_stack_on_stderr(
    kinesalite: Kinesalite, log_path: Path
):
    # Given a request kinesalite's validation lets through and its PutRecords action cannot
    # handle: a null record (it reads `record.ExplicitHashKey` on it).
    _create_stream(_kinesis(kinesalite), "null-record")
    body = json.dumps({"StreamName": "null-record", "Records": [None]}).encode()
    sock = _connect(kinesalite)
    sock.sendall(_head(kinesalite, "PutRecords", len(body)) + body)

    # Then the TypeError is thrown as before: kinesalite exits, and says why.
    assert kinesalite.wait(timeout_s=10) == 1
    sock.close()
    output = log_path.read_text()
    assert "TypeError" in output
    assert "client went away" not in output
