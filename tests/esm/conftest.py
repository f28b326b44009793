"""Fixtures for the ESM runner's conformance suite.

Everything talks to a real endpoint over HTTP (moto's server from tests/conftest.py, or
AWS_ENDPOINT_URL); lineage and reshard tests add kinesalite for Kinesis (a faithful one).
"""

from __future__ import annotations

import io
import json
import os
import time
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import pytest

from esm import FunctionSettings, MappingSettings, Runner, Summary, Tuning
from esm.settings import load_function
from streamline.paths import REPO_ROOT
from streamline.tools.kinesalite import Kinesalite

CODE_DIR = REPO_ROOT / "tests" / "esm"  # the handlers' code directory (esm_handlers.py)

# The runner's pacing, shrunk so tests are fast; the rules under test are untouched.
FAST = Tuning(
    poll_interval_s=0.02,
    retry_backoff_s=0.0,
    max_retry_backoff_s=0.0,
    throttle_backoff_s=0.01,
    max_throttle_backoff_s=0.05,
    shard_refresh_s=0.2,
    progress_interval_s=0,
)
# The same pacing as `python -m esm run` flags.
FAST_FLAGS = ["--poll-interval", "0.02", "--retry-backoff", "0", "--shard-refresh", "0.2"]


def _zip_of(text: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("placeholder.py", text)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def role_arn(aws_session) -> str:
    iam = aws_session.client("iam")
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    role = iam.create_role(
        RoleName=f"esm-tests-{uuid.uuid4().hex[:8]}", AssumeRolePolicyDocument=json.dumps(policy)
    )
    return role["Role"]["Arn"]


@dataclass
class Harness:
    """A test's view of the endpoint: streams, queues, a function, and the runner."""

    session: boto3.Session
    name: str
    tmp_path: Path
    role_arn: str
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.tmp_path / "invocations.jsonl"
        self.state_dir = self.tmp_path / "state"

    def client(self, service: str):
        return self.session.client(service)

    # --- Kinesis -------------------------------------------------------------------------

    def create_stream(self, shards: int = 1, kinesis=None) -> str:
        kinesis = kinesis or self.client("kinesis")
        kinesis.create_stream(StreamName=self.name, ShardCount=shards)
        for _ in range(200):
            summary = kinesis.describe_stream_summary(StreamName=self.name)
            if summary["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE":
                return summary["StreamDescriptionSummary"]["StreamARN"]
            time.sleep(0.05)
        raise TimeoutError(f"stream {self.name} not active")

    def put(self, items: list[tuple[str, str]], kinesis=None) -> list[dict]:
        """Put (partition key, data) pairs in order; returns their PutRecords results."""
        kinesis = kinesis or self.client("kinesis")
        results = []
        for start in range(0, len(items), 500):
            chunk = items[start : start + 500]
            response = kinesis.put_records(
                StreamName=self.name,
                Records=[{"PartitionKey": k, "Data": d.encode()} for k, d in chunk],
            )
            assert response.get("FailedRecordCount", 0) == 0
            results.extend(response["Records"])
        return results

    # --- SQS -----------------------------------------------------------------------------

    def create_queue(self) -> tuple[str, str]:
        sqs = self.client("sqs")
        url = sqs.create_queue(QueueName=f"{self.name}-failures")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        return url, arn

    def messages(self, queue_url: str) -> list[dict]:
        sqs = self.client("sqs")
        bodies = []
        while True:
            response = sqs.receive_message(
                QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
            )
            batch = response.get("Messages", [])
            if not batch:
                return bodies
            for message in batch:
                bodies.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])

    # --- Lambda --------------------------------------------------------------------------

    def create_function(
        self, handler: str, timeout_s: int = 3, environment: dict | None = None
    ) -> FunctionSettings:
        client = self.client("lambda")
        client.create_function(
            FunctionName=self.name,
            Runtime="python3.12",
            Role=self.role_arn,
            Handler=handler,
            Code={"ZipFile": _zip_of("# the runner imports the handler from --code-dir\n")},
            Timeout=timeout_s,
            MemorySize=256,
            Environment={"Variables": {"ESM_TEST_LOG": str(self.log_path), **(environment or {})}},
        )
        return load_function(client, self.name)

    def create_mapping(self, function: FunctionSettings, source_arn: str, **settings) -> str:
        """A mapping at the endpoint, created with the function's ARN (Terraform's way)."""
        response = self.client("lambda").create_event_source_mapping(
            FunctionName=function.arn, EventSourceArn=source_arn, **settings
        )
        return response["UUID"]

    # --- the runner ----------------------------------------------------------------------

    def runner(
        self, function: FunctionSettings, mappings: list[MappingSettings], **kwargs
    ) -> Runner:
        kwargs.setdefault("tuning", FAST)
        kwargs.setdefault("state_dir", self.state_dir)
        kwargs.setdefault("progress", None)
        return Runner(function, mappings, code_dir=CODE_DIR, session=self.session, **kwargs)

    def run(
        self,
        function: FunctionSettings,
        mappings: list[MappingSettings],
        until_idle_s: float = 0.3,
        **kwargs,
    ) -> Summary:
        return self.runner(function, mappings, **kwargs).run(until_idle_s=until_idle_s)

    def invocations(self) -> list[dict]:
        if not self.log_path.exists():
            return []
        return [json.loads(line) for line in self.log_path.read_text().splitlines()]

    def delivered(self) -> list[str]:
        """Every record's data, in invocation order (retries included)."""
        return [d for entry in self.invocations() for d in entry["data"]]


@pytest.fixture
def harness(aws_session, unique_name, tmp_path, role_arn) -> Harness:
    return Harness(aws_session, unique_name, tmp_path, role_arn)


@pytest.fixture
def table(harness):
    """A table with a NEW_AND_OLD_IMAGES stream; returns (name, stream ARN)."""
    dynamodb = harness.client("dynamodb")
    dynamodb.create_table(
        TableName=harness.name,
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    dynamodb.get_waiter("table_exists").wait(
        TableName=harness.name, WaiterConfig={"Delay": 0.1, "MaxAttempts": 100}
    )
    stream_arn = dynamodb.describe_table(TableName=harness.name)["Table"]["LatestStreamArn"]
    return harness.name, stream_arn


def mapping(stream_arn: str, **settings) -> MappingSettings:
    return MappingSettings(event_source_arn=stream_arn, **settings)


# --- kinesalite ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def kinesalite(aws_endpoint, tmp_path_factory) -> Iterator[Kinesalite]:
    """kinesalite on 127.0.0.1 and a free port, from .tools/kinesalite (make esm-tools), under
    the launcher that keeps it up when a client goes away mid-request."""
    log_path = tmp_path_factory.mktemp("kinesalite") / "kinesalite.log"
    with Kinesalite.start(log_path=log_path) as kinesalite:
        yield kinesalite


@pytest.fixture
def kinesalite_session(kinesalite, monkeypatch) -> boto3.Session:
    """A session whose Kinesis is kinesalite and everything else the usual endpoint."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_KINESIS", kinesalite.endpoint)
    return boto3.Session(region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
