"""streamline/tools/proxy.py: forwards to the endpoint, adds its latency, counts operations."""

from __future__ import annotations

import time

import pytest

from streamline.emulator import emulator_client as client
from streamline.tools.proxy import Proxy

pytestmark = pytest.mark.integration


def test_requests_go_through_with_the_added_latency_and_are_counted(aws_endpoint):
    with Proxy(aws_endpoint, latency_ms=0) as fast, Proxy(aws_endpoint, latency_ms=60) as slow:
        assert fast.endpoint.startswith("http://127.0.0.1:")
        direct = client("dynamodb", aws_endpoint).list_tables()["TableNames"]
        client("dynamodb", fast.endpoint).list_tables()  # warm the connection
        dynamodb, sqs = client("dynamodb", slow.endpoint), client("sqs", slow.endpoint)

        started = time.perf_counter()
        proxied = dynamodb.list_tables()["TableNames"]
        elapsed_s = time.perf_counter() - started
        sqs.list_queues()

    assert proxied == direct
    assert elapsed_s >= 0.06
    assert slow.stats.requests["ListTables"] == 1
    assert slow.stats.requests["ListQueues"] == 1
    assert fast.stats.total() == 1


def test_an_upstream_that_is_not_http_is_refused():
    with pytest.raises(ValueError, match="http://"):
        Proxy("ftp://127.0.0.1:1")
    with pytest.raises(ValueError, match="latency_ms"):
        Proxy("http://127.0.0.1:1", latency_ms=-1)
