"""replay.py as a command (issue 10 items 6-7): bad input is one line and exit 2, never a
traceback; held messages stay hidden only while the run works and are visible again however
it ends; messages in flight are said, not passed over with exit 0; the handler's stdout
stays out of replay's. Against the emulator; signals in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from queue_messages import kinesis_poison, on_failure_record
from replay_handlers import STARTED_FILE
from unreachable_aws import no_credentials, unreachable_endpoint

from streamline.paths import REPO_ROOT
from streamline.tools import replay
from streamline.tools.replay import ExitCode, HandlerTarget, Outcome, QueueKind

pytestmark = pytest.mark.integration


def poison_message(stack: dict, n: int = 1) -> dict:
    return kinesis_poison(
        stack["kinesis_stream_arn"], {"key": "k-1", "n": n, "payload": "p"}, str(n)
    )


@pytest.fixture
def sqs(aws_session):
    return aws_session.client("sqs")


def visible(sqs, queue_url: str) -> list[dict]:
    """The messages a reader gets right now (received, then made visible again)."""
    messages = sqs.receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=30, WaitTimeSeconds=0
    ).get("Messages", [])
    for message in messages:
        sqs.change_message_visibility(
            QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
        )
    return messages


def run_main(argv: list[str]) -> int:
    try:
        return replay.main(argv)
    except SystemExit as exc:  # argparse's errors
        return exc.code


# --- bad input -------------------------------------------------------------------------------


@pytest.fixture
def empty_stack(tmp_path) -> str:
    path = tmp_path / "empty.json"
    path.write_text("{}")
    return str(path)


STACK_FILE, QUEUE, ENDPOINT, CREDENTIALS, FLAG, HANDLER = (
    "stack-file",
    "queue",
    "endpoint",
    "credentials",
    "flag",
    "handler",
)


@pytest.mark.parametrize(
    ("case", "args", "said"),
    [
        pytest.param(STACK_FILE, ["--stack", "{tmp}/missing.json"], "missing.json does not exist",
                     id="stack-file-missing"),
        pytest.param(STACK_FILE, ["--stack", "{tmp}/corrupt.json"], "is not JSON",
                     id="stack-file-corrupt"),
        pytest.param(STACK_FILE, ["--stack", "{tmp}/list.json"], "holds a JSON list, not an object",
                     id="stack-file-not-an-object"),
        pytest.param(QUEUE, ["--poison-queue-url", "{endpoint}/123456789012/no-such-queue"],
                     "poison queue", id="queue-does-not-exist"),
        pytest.param(ENDPOINT, ["--poison-queue-url", "http://x/123456789012/q"],
                     "Could not connect", id="endpoint-down"),
        pytest.param(CREDENTIALS, ["--poison-queue-url", "{endpoint}/123456789012/q"],
                     "no AWS credentials", id="no-credentials"),
        pytest.param(FLAG, ["--visibility-timeout", "0"], "--visibility-timeout: must be from 1 to",
                     id="visibility-timeout-0"),
        pytest.param(FLAG, ["--limit", "-1"], "--limit: must be at least 1", id="limit-minus-1"),
        pytest.param(FLAG, ["--batch-size", "0"], "--batch-size: must be at least 1",
                     id="batch-size-0"),
        pytest.param(FLAG, ["--parallelization-factor", "11"], "must be from 1 to 10",
                     id="parallelization-factor-11"),
        pytest.param(HANDLER, ["--to-handler", "no_such_module.handler"],
                     "cannot import no_such_module", id="handler-module-missing"),
        pytest.param(HANDLER, ["--to-handler", "processor.handler.no_such_function"],
                     "has no function 'no_such_function'", id="handler-function-missing"),
        pytest.param(HANDLER, ["--to-handler", "handler"], "is not module.function",
                     id="handler-not-dotted"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_exit_2(
    aws_endpoint, monkeypatch, tmp_path, capsys, empty_stack, case, args, said
):
    (tmp_path / "corrupt.json").write_text('{"poison_queue_url": ')
    (tmp_path / "list.json").write_text('["poison_queue_url"]')
    if case == ENDPOINT:
        unreachable_endpoint(monkeypatch, max_attempts=1)
    if case == CREDENTIALS:
        no_credentials(monkeypatch, tmp_path)
    argv = [a.format(tmp=tmp_path, endpoint=aws_endpoint) for a in args]
    if "--stack" not in argv:
        argv += ["--stack", empty_stack]
    if "--poison-queue-url" not in argv:
        argv += ["--poison-queue-url", f"{aws_endpoint}/123456789012/q"]
    if "--to-handler" not in argv:
        argv.append("--to-stream")

    code = run_main(["--from", "poison", *argv])

    captured = capsys.readouterr()
    assert code == ExitCode.UNUSABLE
    assert captured.out == ""
    [line] = captured.err.splitlines()
    assert said in line and "Traceback" not in line


# --- visibility ------------------------------------------------------------------------------


def test_messages_in_flight_are_said_and_exit_5_not_passed_over(demo_stack, sqs, capsys):
    queue = demo_stack["poison_queue_url"]
    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(poison_message(demo_stack)))
    # A replay killed midway left it hidden.
    [held] = sqs.receive_message(QueueUrl=queue, VisibilityTimeout=120)["Messages"]

    code = replay.main(["--stack", demo_stack["path"], "--from", "poison", "--to-stream"])

    out = capsys.readouterr().out
    assert code == ExitCode.IN_FLIGHT
    assert f"1 message(s) of {queue} were in flight" in out and "run again later" in out
    sqs.change_message_visibility(
        QueueUrl=queue, ReceiptHandle=held["ReceiptHandle"], VisibilityTimeout=0
    )


def test_a_held_message_stays_hidden_past_its_short_timeout_while_the_run_works(demo_stack, sqs):
    queue = demo_stack["poison_queue_url"]
    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(poison_message(demo_stack)))
    seen_meanwhile = []

    def handler(event, context):
        time.sleep(2.5)  # well past the 1 s visibility timeout
        seen_meanwhile.extend(visible(sqs, queue))
        ids = [i for i in replay.record_ids(event["Records"]) if i]
        return {"streamlineReplay": {"applied": ids}}

    summary = replay.replay(
        {QueueKind.POISON: queue},
        HandlerTarget(handler, "slow", 10),
        visibility_timeout_s=1,
        out=lambda _: None,
    )

    assert seen_meanwhile == []
    assert summary.outcomes == {Outcome.DELETED: 1}
    assert visible(sqs, queue) == []


@pytest.mark.parametrize(
    ("signum", "code"),
    [
        pytest.param(signal.SIGINT, ExitCode.INTERRUPTED, id="sigint"),
        pytest.param(signal.SIGTERM, ExitCode.TERMINATED, id="sigterm"),
    ],
)
def test_a_signal_makes_held_messages_visible_at_once(demo_stack, sqs, tmp_path, signum, code):
    queue = demo_stack["poison_queue_url"]
    for n in (1, 2):
        sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(poison_message(demo_stack, n=n)))
    started = tmp_path / "started"
    env = {**os.environ, STARTED_FILE: str(started), "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamline.tools.replay",
            "--stack",
            demo_stack["path"],
            "--from",
            "poison",
            "--to-handler",
            "tests.tools.replay_handlers.slow_handler",
            "--visibility-timeout",
            "300",
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not started.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert started.exists(), proc.communicate()
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    assert proc.returncode == code, err
    assert "Traceback" not in err
    assert "interrupted, every held message visible again" in out
    assert len(visible(sqs, queue)) == 2  # not hidden for the 300 s asked


# --- the handler's stdout, end to end through processor.handler -----------------------------


def test_the_demo_handlers_metrics_stay_out_of_stdout_and_an_unknown_batch_exits_3(
    aws_session, demo_stack, sqs
):
    from processor import OrderedProcessor
    from processor.checkpoint import DynamoDBCheckpointStore
    from processor.poison import SqsPoisonSink
    from processor.testing import event, kinesis_record

    kinesis = aws_session.client("kinesis")
    written = [
        kinesis.put_record(
            StreamName=demo_stack["kinesis_stream_name"],
            PartitionKey="k-9",
            Data=json.dumps({"key": "k-9", "n": n, "payload": "p"}).encode(),
        )
        for n in (1, 2, 3)
    ]
    # The function crashed on 1..2 and the ESM gave up; 3 was applied afterwards.
    live = OrderedProcessor(
        lambda record: None,
        checkpoints=DynamoDBCheckpointStore(demo_stack["checkpoint_table_name"]),
        poison=SqsPoisonSink(demo_stack["poison_queue_url"]),
    )
    body = {"key": "k-9", "n": 3, "payload": "p"}
    live.process(
        event(
            kinesis_record(
                "k-9",
                written[2]["SequenceNumber"],
                body,
                shard_id=written[2]["ShardId"],
                arn=demo_stack["kinesis_stream_arn"],
            )
        )
    )
    on_failure = on_failure_record(
        demo_stack["kinesis_stream_arn"],
        written[0]["ShardId"],
        written[0]["SequenceNumber"],
        written[1]["SequenceNumber"],
        2,
    )
    queue = demo_stack["on_failure_queue_url"]
    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(on_failure))
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "CHECKPOINT_TABLE": demo_stack["checkpoint_table_name"],
        "SINK_TABLE": demo_stack["sink_table_name"],
        "POISON_QUEUE_URL": demo_stack["poison_queue_url"],
        "POWERTOOLS_METRICS_NAMESPACE": "replay-test",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "streamline.tools.replay",
            "--stack",
            demo_stack["path"],
            "--from",
            "on-failure",
            "--to-handler",
            "processor.handler.handler",
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == ExitCode.UNCONFIRMED, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2, done.stdout  # the message's line and the summary, nothing else
    assert lines[0].startswith("on-failure kinesis") and "UNCONFIRMED" in lines[0]
    assert lines[1].startswith("re-drove 2 record(s) to handler processor.handler.handler")
    assert '"_aws"' in done.stderr  # the metrics went to stderr
    assert len(visible(sqs, queue)) == 1
