"""verify.py reads the poison queue without hiding it from anyone for long: messages are
made visible again at the end and on SIGINT/SIGTERM, and messages another reader holds are
"in flight" (exit 3, not drained), never lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from queue_messages import kinesis_poison

from streamline.paths import REPO_ROOT
from streamline.tools import load, verify
from streamline.tools.load import Event, Source
from streamline.tools.manifest import write_manifest

pytestmark = pytest.mark.integration

KEY = "k-r1-0001"
# n=2 and n=4 are poison: parked, they leave the chain 1, 3, 5.
EVENTS = [Event(i, Source.KINESIS, KEY, i + 1, f"p{i + 1}", poison=i in (1, 3)) for i in range(5)]


def given_a_run(demo_stack: dict, aws_session, tmp_path, applied: tuple[int, ...]) -> Path:
    """The run's manifest, the sink row after `applied`, and both poison events parked."""
    path = tmp_path / "manifest.json"
    meta = {"runId": "r1", "createdAt": "2026-01-01", "seed": 1, "aggregated": False, "stack": {}}
    write_manifest(path, load.manifest_for(EVENTS, {}, meta, True))
    h = ""
    for n in applied:
        h = verify.chain(h, f"p{n}")
    aws_session.client("dynamodb").put_item(
        TableName=demo_stack["sink_table_name"],
        Item={
            "pk": {"S": KEY},
            "last_n": {"N": str(applied[-1])},
            "count": {"N": str(len(applied))},
            "h": {"S": h},
        },
    )
    for event in EVENTS:
        if event.poison:
            park(aws_session.client("sqs"), demo_stack, event)
    return path


def park(sqs, stack: dict, event: Event) -> None:
    message = kinesis_poison(stack["kinesis_stream_arn"], event.body(), str(event.n * 10))
    sqs.send_message(QueueUrl=stack["poison_queue_url"], MessageBody=json.dumps(message))


def hidden(sqs, stack: dict) -> int:
    return verify.in_flight(sqs, stack["poison_queue_url"])


def take_one(sqs, stack: dict, seconds: int) -> None:
    """Another reader (replay.py, say) holds one poison message for `seconds`."""
    [message] = sqs.receive_message(
        QueueUrl=stack["poison_queue_url"], MaxNumberOfMessages=1, VisibilityTimeout=seconds
    )["Messages"]
    assert message


def test_a_message_another_reader_holds_is_in_flight_not_lost(
    aws_session, demo_stack, tmp_path, capsys
):
    manifest = given_a_run(demo_stack, aws_session, tmp_path, applied=(1, 3, 5))
    take_one(aws_session.client("sqs"), demo_stack, seconds=60)

    code = verify.main(["--stack", demo_stack["path"], "--manifest", str(manifest), "--no-wait"])

    summary = capsys.readouterr().out.splitlines()[0]
    assert code == verify.ExitCode.NOT_DRAINED == 3
    assert summary.startswith("not drained: 1 poison message(s) in flight")
    assert "1 not accounted for yet" in summary and "lost" not in summary


def test_waiting_goes_on_while_messages_are_in_flight(aws_session, demo_stack, tmp_path, capsys):
    manifest = given_a_run(demo_stack, aws_session, tmp_path, applied=(1, 3, 5))
    take_one(aws_session.client("sqs"), demo_stack, seconds=2)
    argv = ["--stack", demo_stack["path"], "--manifest", str(manifest)]

    code = verify.main([*argv, "--settle", "0.5", "--poll", "0.2", "--timeout", "20"])

    assert code == verify.ExitCode.OK
    assert "3 applied in order, 2 parked, 0 lost" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("signum", "exit_code"),
    [
        pytest.param(signal.SIGINT, 130, id="ctrl-c"),
        pytest.param(signal.SIGTERM, 128 + signal.SIGTERM, id="sigterm"),
    ],
)
def test_an_interrupted_verify_makes_the_messages_visible_again(
    aws_session, demo_stack, tmp_path, signum, exit_code
):
    # n=5 never applied: verify waits, walking the queue over and over.
    manifest = given_a_run(demo_stack, aws_session, tmp_path, applied=(1, 3))
    sqs = aws_session.client("sqs")
    log = tmp_path / "verify.log"
    command = [
        sys.executable, "scripts/verify.py", "--stack", demo_stack["path"],
        "--manifest", str(manifest), "--timeout", "60", "--settle", "60", "--poll", "0.05",
    ]  # fmt: skip
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            command, cwd=REPO_ROOT, env=dict(os.environ), stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 20
        while hidden(sqs, demo_stack) == 0:  # verify holds the messages right now
            assert time.monotonic() < deadline and proc.poll() is None, log.read_text()
            time.sleep(0.02)
        proc.send_signal(signum)
        code = proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    output = log.read_text()
    assert code == exit_code, output
    assert hidden(sqs, demo_stack) == 0
    assert len(verify.peek_queue(sqs, demo_stack["poison_queue_url"])) == 2
    assert "Traceback" not in output
    name = signal.Signals(signum).name
    assert output.splitlines()[-1] == f"verify: interrupted ({name}); poison messages left visible"
