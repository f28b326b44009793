"""Fixtures shared by every test folder.

Integration tests talk to a real AWS endpoint over HTTP: moto's server, started here on
127.0.0.1 with a free port and stopped by PID, or, when AWS_ENDPOINT_URL is set, whatever
runs there (a LocalStack, say). Resources get unique names, so tests never depend on a reset.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import boto3
import pytest

from streamline.emulator import EMULATOR_ENV, Emulator, stop_pid
from streamline.paths import REPO_ROOT


@pytest.fixture(scope="session")
def aws_endpoint(tmp_path_factory) -> Iterator[str]:
    """The endpoint every integration test talks to; the process env points at it too."""
    saved = dict(os.environ)
    external = os.environ.get("AWS_ENDPOINT_URL")
    emulator = None
    if external:
        endpoint = external
        for name, value in EMULATOR_ENV.items():
            os.environ.setdefault(name, value)
    else:
        log = tmp_path_factory.mktemp("emulator") / "moto.log"
        emulator = Emulator.start(log_path=log)
        endpoint = emulator.endpoint
        os.environ.update(emulator.env())
    try:
        yield endpoint
    finally:
        if emulator is not None:
            emulator.stop()
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="session")
def aws_session(aws_endpoint) -> boto3.Session:
    return boto3.Session(region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))


@pytest.fixture
def umask() -> Iterator[None]:
    """Restores the process umask after a test that sets one (tests of file modes)."""
    saved = os.umask(0o022)
    os.umask(saved)
    yield
    os.umask(saved)


@pytest.fixture
def unique_name(request) -> str:
    """A resource name no other test uses: test name plus a random suffix, AWS-safe."""
    base = "".join(c if c.isalnum() else "-" for c in request.node.name)[:40].strip("-")
    return f"{base}-{uuid.uuid4().hex[:8]}"


KEY_SCHEMA = {
    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
    "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
    "BillingMode": "PAY_PER_REQUEST",
}


def create_table(client, name: str, wait: bool = True, **extra) -> str:
    """A table with the project's key schema (string hash key `pk`, on-demand)."""
    client.create_table(TableName=name, **KEY_SCHEMA, **extra)
    if wait:
        client.get_waiter("table_exists").wait(TableName=name)
    return name


@pytest.fixture
def new_table(aws_session):
    """Make tables with the project's key schema: `new_table(name)` returns the name."""
    client = aws_session.client("dynamodb")
    return lambda name, **extra: create_table(client, name, **extra)


@pytest.fixture
def demo_stack(aws_session, unique_name, tmp_path) -> dict:
    """Stream, source table (with stream), sink and checkpoint tables, poison and on-failure
    queues, named uniquely; the dict has build/stack.json's keys, plus `path` to such a file."""
    kinesis = aws_session.client("kinesis")
    dynamodb = aws_session.client("dynamodb")
    sqs = aws_session.client("sqs")
    name = unique_name[-40:].strip("-")
    kinesis.create_stream(StreamName=name, ShardCount=2)
    kinesis.get_waiter("stream_exists").wait(StreamName=name)
    source = dynamodb.create_table(
        TableName=f"{name}-src",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        **KEY_SCHEMA,
    )
    for table in ("sink", "ckpt"):
        create_table(dynamodb, f"{name}-{table}", wait=False)
    stream_arn = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"][
        "StreamARN"
    ]
    stack = {
        "kinesis_stream_name": name,
        "kinesis_stream_arn": stream_arn,
        "source_table_name": f"{name}-src",
        "source_table_stream_arn": source["TableDescription"]["LatestStreamArn"],
        "sink_table_name": f"{name}-sink",
        "checkpoint_table_name": f"{name}-ckpt",
        "poison_queue_url": sqs.create_queue(QueueName=f"{name}-poison")["QueueUrl"],
        "on_failure_queue_url": sqs.create_queue(QueueName=f"{name}-onfail")["QueueUrl"],
    }
    path = tmp_path / "stack.json"
    path.write_text(json.dumps(stack))
    yield {**stack, "path": str(path)}
    kinesis.delete_stream(StreamName=name, EnforceConsumerDeletion=True)
    for table in ("src", "sink", "ckpt"):
        dynamodb.delete_table(TableName=f"{name}-{table}")
    for queue in ("poison_queue_url", "on_failure_queue_url"):
        sqs.delete_queue(QueueUrl=stack[queue])


# The local runner over a demo_stack, as the demo runs it (both sources, the demo handler).
RUNNER_TIMEOUT_S = 150


def _start_runner(stack: dict, stream_arn: str, state_dir, log_path):
    command = [
        sys.executable, "-m", "esm", "run",
        "--stream-arn", stream_arn,
        "--handler", "processor.handler.handler",
        "--env", f"CHECKPOINT_TABLE={stack['checkpoint_table_name']}",
        "--env", f"SINK_TABLE={stack['sink_table_name']}",
        "--env", f"POISON_QUEUE_URL={stack['poison_queue_url']}",
        "--env", "MAX_ATTEMPTS=2",
        "--env", "POWERTOOLS_LOG_LEVEL=WARNING",
        "--timeout", "30",
        "--batch-size", "100",
        "--starting-position", "TRIM_HORIZON",
        "--report-batch-item-failures",
        "--bisect-batch-on-function-error",
        "--until-idle", "3",
        "--progress-interval", "0",
        "--state-dir", str(state_dir),
    ]  # fmt: skip
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            command, cwd=REPO_ROOT, env=dict(os.environ), stdout=log, stderr=subprocess.STDOUT
        )


@pytest.fixture
def process_demo_stack(demo_stack, tmp_path):
    """Runs the demo handler over both sources of `demo_stack` until they are caught up
    (one runner each, stopped by PID if still running at the deadline); asserts both exited 0."""

    def process() -> None:
        runners = [
            _start_runner(demo_stack, demo_stack[arn], tmp_path / arn, tmp_path / f"{arn}.log")
            for arn in ("kinesis_stream_arn", "source_table_stream_arn")
        ]
        try:
            deadline = time.monotonic() + RUNNER_TIMEOUT_S
            for runner in runners:
                runner.wait(timeout=max(1.0, deadline - time.monotonic()))
        finally:
            for runner in runners:
                if runner.poll() is None:
                    stop_pid(runner.pid)
        logs = {p.name: p.read_text(errors="replace")[-2000:] for p in tmp_path.glob("*.log")}
        assert [r.returncode for r in runners] == [0, 0], logs

    return process
