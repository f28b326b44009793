"""streamline/tools/proxy.py: forwards to the endpoint, adds its latency, counts operations."""

from __future__ import annotations

import time
import uuid

import pytest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from streamline.emulator import emulator_client as client
from streamline.tools.proxy import Fault, Faults, Proxy

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


# --- faults ---------------------------------------------------------------------------------

NO_RETRIES = Config(retries={"total_max_attempts": 1, "mode": "standard"})


@pytest.fixture
def table(aws_endpoint) -> str:
    name = f"proxy-{uuid.uuid4().hex[:8]}"
    client("dynamodb", aws_endpoint).create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return name


@pytest.mark.parametrize(
    ("service", "call", "code"),
    [
        pytest.param(
            "kinesis",
            lambda c: c.list_streams(),
            "ProvisionedThroughputExceededException",
            id="kinesis",
        ),
        pytest.param("dynamodb", lambda c: c.list_tables(), "ThrottlingException", id="dynamodb"),
        pytest.param("sqs", lambda c: c.list_queues(), "ThrottlingException", id="sqs"),
    ],
)
def test_throttling_is_answered_with_the_services_own_code(aws_endpoint, service, call, code):
    with (
        Proxy(aws_endpoint, faults=Faults(throttle_rate=1.0)) as proxy,
        pytest.raises(ClientError) as raised,
    ):
        call(client(service, proxy.endpoint, config=NO_RETRIES))

    assert raised.value.response["Error"]["Code"] == code
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert proxy.stats.faults[Fault.THROTTLE] == 1


def test_a_server_error_is_a_500_the_sdk_reads(aws_endpoint):
    with (
        Proxy(aws_endpoint, faults=Faults(server_error_rate=1.0)) as proxy,
        pytest.raises(ClientError) as raised,
    ):
        client("dynamodb", proxy.endpoint, config=NO_RETRIES).list_tables()

    assert raised.value.response["Error"]["Code"] == "InternalFailure"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500


def test_a_drop_before_loses_the_request_and_a_drop_after_loses_only_the_answer(
    aws_endpoint, table
):
    direct = client("dynamodb", aws_endpoint)
    for fault, rate, landed in (("drop_before_rate", 1.0, False), ("drop_after_rate", 1.0, True)):
        with Proxy(aws_endpoint, faults=Faults(**{fault: rate})) as proxy:
            dynamodb = client("dynamodb", proxy.endpoint, config=NO_RETRIES)
            with pytest.raises((BotoCoreError, ClientError)):
                dynamodb.put_item(TableName=table, Item={"pk": {"S": fault}})

        item = direct.get_item(TableName=table, Key={"pk": {"S": fault}}).get("Item")
        assert (item is not None) is landed, fault


def test_faults_touch_only_matching_requests_and_a_seed_repeats_them(aws_endpoint, table):
    def pattern(seed: int) -> list[bool]:
        faults = Faults(server_error_rate=0.5, seed=seed, match=table)
        with Proxy(aws_endpoint, faults=faults) as proxy:
            dynamodb = client("dynamodb", proxy.endpoint, config=NO_RETRIES)
            dynamodb.list_tables()  # names no table: never touched
            outcomes = []
            for _ in range(20):
                try:
                    dynamodb.describe_table(TableName=table)
                    outcomes.append(True)
                except ClientError:
                    outcomes.append(False)
            return outcomes

    first = pattern(7)
    assert first == pattern(7)
    assert first != pattern(8)
    assert 0 < first.count(False) < 20


def test_an_outage_answers_503_for_its_resource_until_it_ends(aws_endpoint, table):
    with Proxy(aws_endpoint) as proxy:
        dynamodb = client("dynamodb", proxy.endpoint, config=NO_RETRIES)
        proxy.outage(0.5, match=table)
        with pytest.raises(ClientError) as raised:
            dynamodb.describe_table(TableName=table)
        dynamodb.list_tables()  # other requests go through
        time.sleep(0.6)
        dynamodb.describe_table(TableName=table)

    assert raised.value.response["Error"]["Code"] == "ServiceUnavailable"
    assert proxy.stats.faults[Fault.OUTAGE] == 1


def test_rates_out_of_range_are_refused():
    with pytest.raises(ValueError, match="fault rates"):
        Faults(throttle_rate=0.7, server_error_rate=0.7)
    with pytest.raises(ValueError, match="fault rates"):
        Faults(drop_before_rate=-0.1)


@pytest.mark.parametrize(
    "gone", [BrokenPipeError(32, "Broken pipe"), ConnectionResetError(104, "reset"), TimeoutError()]
)
def test_a_client_that_went_away_is_no_traceback(gone, capsys):
    # A SIGKILLed runner or an SDK call that timed out leaves mid-exchange: in a chaos run that
    # is hundreds of times, and each one is not the proxy's error.
    with Proxy("http://127.0.0.1:9") as proxy:
        try:
            raise gone
        except type(gone):
            proxy._server.handle_error(None, ("127.0.0.1", 1))
        try:
            raise ValueError("a bug in the proxy")
        except ValueError:
            proxy._server.handle_error(None, ("127.0.0.1", 2))

    err = capsys.readouterr().err
    assert "a bug in the proxy" in err and type(gone).__name__ not in err
