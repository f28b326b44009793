"""verify.py never gives a false verdict on bad input: a stack, manifest, name, endpoint or
credential it cannot use exits 2 ("cannot check") with one line on stderr, never 1 (the code
for "events lost") and never a traceback. The manifest is sealed: edited, emptied or
incomplete, it is refused."""

from __future__ import annotations

import json

import pytest
from unreachable_aws import no_credentials, unreachable_endpoint

from streamline.tools import load, verify
from streamline.tools.load import Event, Source
from streamline.tools.manifest import write_manifest

pytestmark = pytest.mark.integration

RUN = "r1"
EVENTS = [
    Event(0, Source.KINESIS, f"k-{RUN}-0001", 1, "p1"),
    Event(1, Source.KINESIS, f"k-{RUN}-0001", 2, "p2"),
    Event(2, Source.KINESIS, f"k-{RUN}-0002", 1, "q1"),
]


def sealed(path, events=EVENTS, complete=True, **meta) -> None:
    """A manifest as load.py writes it."""
    fields = {
        "runId": RUN,
        "createdAt": "2026-01-01T00:00:00+00:00",
        "seed": 1,
        "aggregated": False,
        "stack": {},
        **meta,
    }
    write_manifest(path, load.manifest_for(events, {}, fields, complete))


def edited(path, change) -> None:
    """The manifest at `path`, changed by hand (not sealed again)."""
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


class Setup:
    def __init__(self, stack: dict, tmp_path, monkeypatch):
        self.stack = stack
        self.tmp = tmp_path
        self.monkeypatch = monkeypatch
        self.manifest = tmp_path / "manifest.json"
        sealed(self.manifest)

    def file(self, name: str, text: str) -> str:
        path = self.tmp / name
        path.write_text(text)
        return str(path)

    def args(self, *extra: str, stack: str | None = None) -> list[str]:
        return [
            "--stack",
            stack or self.stack["path"],
            "--manifest",
            str(self.manifest),
            "--no-wait",
            *extra,
        ]


def without_credentials(setup: Setup) -> list[str]:
    no_credentials(setup.monkeypatch, setup.tmp)
    return setup.args()


def endpoint_down(setup: Setup) -> list[str]:
    unreachable_endpoint(setup.monkeypatch)
    return setup.args()


def manifest_as(text: str):
    def build(setup: Setup) -> list[str]:
        setup.manifest.write_text(text)
        return setup.args()

    return build


def manifest_with(**kwargs):
    def build(setup: Setup) -> list[str]:
        sealed(setup.manifest, **kwargs)
        return setup.args()

    return build


def manifest_edited(change):
    def build(setup: Setup) -> list[str]:
        edited(setup.manifest, change)
        return setup.args()

    return build


def drop_key(manifest: dict) -> None:
    manifest["events"] = [e for e in manifest["events"] if e["key"] != f"k-{RUN}-0002"]
    manifest["eventCount"] = len(manifest["events"])


@pytest.mark.parametrize(
    ("build", "phrase"),
    [
        pytest.param(
            lambda s: s.args(stack=str(s.tmp / "missing.json")),
            "missing.json does not exist",
            id="stack-file-missing",
        ),
        pytest.param(
            lambda s: s.args(stack=s.file("bad.json", "{not json")),
            "is not JSON",
            id="stack-file-corrupt",
        ),
        pytest.param(
            lambda s: s.args(stack=s.file("list.json", "[1, 2]")),
            "holds a JSON list, not an object",
            id="stack-file-not-an-object",
        ),
        pytest.param(
            lambda s: s.args(stack=s.file("num.json", '{"sink_table_name": 5}')),
            "sink_table_name is a int, not a string",
            id="stack-value-not-a-string",
        ),
        pytest.param(
            lambda s: s.args(stack=s.file("empty.json", "{}")),
            "need the sink table and poison queue",
            id="stack-without-names",
        ),
        pytest.param(
            lambda s: s.args("--sink-table-name", "no-such-table"),
            "sink table no-such-table: does not exist",
            id="wrong-sink-table",
        ),
        pytest.param(
            lambda s: s.args("--poison-queue-url", s.stack["poison_queue_url"] + "-nope"),
            "-nope: does not exist",
            id="wrong-poison-queue",
        ),
        pytest.param(
            lambda s: s.args("--on-failure-queue-url", s.stack["on_failure_queue_url"] + "-x"),
            "on-failure queue",
            id="wrong-on-failure-queue",
        ),
        pytest.param(endpoint_down, "Could not connect to the endpoint URL", id="endpoint-down"),
        pytest.param(without_credentials, "no AWS credentials", id="no-credentials"),
        pytest.param(
            lambda s: s.args("--manifest", str(s.tmp / "none.json")),
            "none.json does not exist: run load.py first",
            id="manifest-missing",
        ),
        pytest.param(manifest_as('{"events": ['), "is not JSON", id="manifest-corrupt"),
        pytest.param(manifest_as("[]"), "holds a JSON list", id="manifest-not-an-object"),
        pytest.param(
            manifest_as(json.dumps({"version": 1, "complete": True, "events": []})),
            "has version 1",
            id="manifest-of-an-older-load",
        ),
        pytest.param(
            manifest_edited(drop_key),
            "was modified after load.py wrote it",
            id="manifest-with-a-key-deleted",
        ),
        pytest.param(
            manifest_edited(lambda m: m.pop("sha256")),
            "carries no sha256 digest",
            id="manifest-without-digest",
        ),
        pytest.param(
            manifest_with(events=[]), "lists no events: there is nothing to verify", id="empty"
        ),
        pytest.param(manifest_with(complete=False), "is incomplete", id="manifest-incomplete"),
        pytest.param(
            manifest_with(stack={"sink_table_name": "another-sink"}),
            "is for sink table another-sink",
            id="manifest-for-another-stack",
        ),
        pytest.param(
            manifest_with(runId="Not A Run"),
            "run id 'Not A Run' is not 1-16 lowercase letters and digits",
            id="manifest-with-a-bad-run-id",
        ),
    ],
)
def test_what_cannot_be_checked_exits_2_with_one_line(
    demo_stack, tmp_path, monkeypatch, capsys, build, phrase
):
    argv = build(Setup(demo_stack, tmp_path, monkeypatch))

    code = verify.main(argv)

    captured = capsys.readouterr()
    assert code == verify.ExitCode.CANNOT_CHECK == 2
    assert captured.out == ""
    [line] = captured.err.splitlines()
    assert line.startswith("verify: cannot check: ") and phrase in line, line


def test_a_sealed_event_of_the_wrong_type_is_refused(demo_stack, tmp_path, capsys):
    path = tmp_path / "manifest.json"
    sealed(path)
    manifest = json.loads(path.read_text())
    manifest["events"][1]["n"] = "2"
    write_manifest(path, manifest)  # sealed again: the digest cannot tell

    code = verify.main(["--stack", demo_stack["path"], "--manifest", str(path), "--no-wait"])

    assert code == verify.ExitCode.CANNOT_CHECK
    assert "event 1: 'n' must be an integer" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "phrase"),
    [
        pytest.param(["--poll", "-1"], "argument --poll: must be a finite number more than 0"),
        pytest.param(["--poll", "0"], "argument --poll: must be a finite number more than 0"),
        pytest.param(["--timeout", "-1"], "argument --timeout: must be a finite number at least"),
        pytest.param(["--settle", "nan"], "argument --settle: must be a finite number"),
        pytest.param(["--poll", "soon"], "argument --poll: 'soon' is not a number"),
    ],
    ids=["poll-negative", "poll-zero", "timeout-negative", "settle-nan", "poll-not-a-number"],
)
def test_bad_arguments_are_a_usage_error(capsys, argv, phrase):
    with pytest.raises(SystemExit) as exited:
        verify.main(argv)

    err = capsys.readouterr().err
    assert exited.value.code == 2
    assert phrase in err and "Traceback" not in err


def test_help_documents_every_exit_code(capsys):
    with pytest.raises(SystemExit):
        verify.main(["--help"])

    out = capsys.readouterr().out
    for code in verify.ExitCode:
        assert f"\n  {code.value:<4} " in out


def test_a_manifest_with_a_key_deleted_and_sealed_again_still_fails(
    aws_session, demo_stack, tmp_path, capsys
):
    """The run id in the keys shows the sink holds a key of this run the manifest lost."""
    dynamodb = aws_session.client("dynamodb")
    for event in EVENTS:
        h = ""
        for e in EVENTS:
            if e.key == event.key and e.n <= event.n:
                h = verify.chain(h, e.payload)
        dynamodb.put_item(
            TableName=demo_stack["sink_table_name"],
            Item={
                "pk": {"S": event.key},
                "last_n": {"N": str(event.n)},
                "count": {"N": str(event.n)},
                "h": {"S": h},
            },
        )
    path = tmp_path / "manifest.json"
    sealed(path, events=[e for e in EVENTS if e.key != f"k-{RUN}-0002"])

    code = verify.main(["--stack", demo_stack["path"], "--manifest", str(path), "--no-wait"])

    out = capsys.readouterr().out
    assert code == verify.ExitCode.MISMATCH
    assert "1 keys not in the manifest" in out
    assert f"in the sink but not in the manifest: k-{RUN}-0002" in out
