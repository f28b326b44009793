"""Files that hold payloads are their owner's only: load.py's manifest (every event's payload)
and the demo's build/demo/ (the manifest, the runner's log with the handler's logs, the
runner's state). Files 0600, the directories created for them 0700, whatever the umask;
directories that already exist keep their mode. replay.py writes no files (its reports go to
stdout), so it has nothing here. No server needed."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

from esm.private_files import create_private, make_private_dirs
from streamline import demo
from streamline.tools import load
from streamline.tools.load import Event, Source
from streamline.tools.manifest import read_manifest, write_manifest

RUN = "r1"
EVENTS = [Event(0, Source.KINESIS, f"k-{RUN}-0001", 1, "a payload")]
META = {
    "runId": RUN,
    "createdAt": "2026-01-01T00:00:00+00:00",
    "seed": 1,
    "aggregated": False,
    "stack": {},
}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def write_load_manifest(path: Path, complete: bool = True) -> None:
    """What load.py's saver writes, before sending (incomplete) and after (complete)."""
    write_manifest(path, load.manifest_for(EVENTS, {}, dict(META), complete))


# --- the load manifest --------------------------------------------------------------------


def test_the_manifest_is_created_owner_only_in_directories_created_owner_only(tmp_path):
    path = tmp_path / "out" / "run" / "manifest.json"

    write_load_manifest(path)

    assert mode(path) == 0o600
    assert mode(tmp_path / "out") == mode(tmp_path / "out" / "run") == 0o700
    assert read_manifest(path)["events"][0]["payload"] == "a payload"


def test_the_manifest_rewritten_when_the_load_is_done_stays_owner_only(tmp_path):
    path = tmp_path / "manifest.json"
    write_load_manifest(path, complete=False)

    write_load_manifest(path, complete=True)

    assert mode(path) == 0o600
    assert read_manifest(path)["complete"] is True
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]  # no temporary left


def test_a_world_readable_manifest_from_before_is_replaced_by_an_owner_only_one(tmp_path):
    path = tmp_path / "manifest.json"
    path.write_text("{}")
    path.chmod(0o644)

    write_load_manifest(path)

    assert mode(path) == 0o600


def test_the_manifest_directory_that_exists_keeps_its_mode(tmp_path):
    shared = tmp_path / "build"
    shared.mkdir()
    shared.chmod(0o755)

    write_load_manifest(shared / "manifest.json")

    assert mode(shared) == 0o755
    assert mode(shared / "manifest.json") == 0o600


def test_the_manifest_mode_does_not_depend_on_the_umask(tmp_path, umask):
    os.umask(0o277)  # takes even the owner's write bit

    write_load_manifest(tmp_path / "out" / "manifest.json")

    assert mode(tmp_path / "out" / "manifest.json") == 0o600
    assert mode(tmp_path / "out") == 0o700


# --- files opened for writing (the demo's runner log) -------------------------------------


def test_a_private_file_replaces_a_world_readable_one_instead_of_truncating_it(tmp_path):
    # A reader holding the old file open must not see what is written next.
    old = tmp_path / "esm.log"
    old.write_text("old lines")
    old.chmod(0o644)
    with old.open() as reader:
        with create_private(old) as log:
            log.write(b"payload")

        assert reader.read() == "old lines"
    assert mode(old) == 0o600
    assert old.read_bytes() == b"payload"


def test_private_dirs_are_created_0700_and_existing_ones_left_alone(tmp_path, umask):
    tmp_path.chmod(0o755)
    os.umask(0o277)

    make_private_dirs(tmp_path / "a" / "b")

    assert mode(tmp_path) == 0o755
    assert mode(tmp_path / "a") == mode(tmp_path / "a" / "b") == 0o700


# --- the demo ---------------------------------------------------------------------------


class _Runner:
    """Stands in for the runner process: writes a log line through the handle it was given."""

    def __init__(self, command, stdout, **kwargs):
        self.command = command
        os.write(stdout.fileno(), b'{"level": "DEBUG", "payload": "secret"}\n')


def test_the_demo_directory_and_its_runner_log_are_owner_only(tmp_path, monkeypatch):
    # Given the demo's directory does not exist yet
    monkeypatch.setattr(demo, "REPO_ROOT", tmp_path)
    monkeypatch.setattr(demo, "DEMO_DIR", tmp_path / "build" / "demo")
    monkeypatch.setattr(subprocess, "Popen", _Runner)

    # When the demo starts the runner with its log in that directory
    runner = demo.start_runner("fn", {}, demo.DEMO_DIR / "esm.log", until_idle_s=1)

    # Then the directory is created 0700, the log 0600, and the runner's state goes beneath it
    assert mode(demo.DEMO_DIR) == 0o700
    assert mode(demo.DEMO_DIR / "esm.log") == 0o600
    assert (demo.DEMO_DIR / "esm.log").read_bytes().endswith(b'"secret"}\n')
    state_dir = Path(runner.command[runner.command.index("--state-dir") + 1])
    assert state_dir.parent == demo.DEMO_DIR
