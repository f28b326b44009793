"""The runner's state files (`--state-dir`) are its owner's only: checkpoint files 0600, the
directories created for them 0700, whatever the umask; directories that already exist keep
their mode (a `--state-dir` of /tmp is the user's, not ours to change)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from conftest import mapping

from esm.checkpoints import FileShardCheckpoints, ShardCheckpoint


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- the store, no server -----------------------------------------------------------------


def test_a_checkpoint_file_is_created_owner_only(tmp_path):
    path = tmp_path / "state" / "fn-uuid.json"

    FileShardCheckpoints(path).save("shardId-0", ShardCheckpoint("42"))

    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700


def test_every_missing_parent_of_the_state_dir_is_created_owner_only(tmp_path):
    path = tmp_path / "a" / "b" / "state" / "fn-uuid.json"

    FileShardCheckpoints(path).save("shardId-0", ShardCheckpoint("42"))

    for directory in (tmp_path / "a", tmp_path / "a" / "b", tmp_path / "a" / "b" / "state"):
        assert mode(directory) == 0o700, directory


def test_an_existing_state_dir_keeps_its_mode(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)

    FileShardCheckpoints(shared / "fn-uuid.json").save("shardId-0", ShardCheckpoint("42"))

    assert mode(shared) == 0o755
    assert mode(shared / "fn-uuid.json") == 0o600


def test_a_world_readable_checkpoint_from_before_is_replaced_by_an_owner_only_one(tmp_path):
    path = tmp_path / "fn-uuid.json"
    path.write_text(json.dumps({"shards": {"shardId-0": {"sequenceNumber": "7"}}}))
    path.chmod(0o644)
    store = FileShardCheckpoints(path)

    store.save("shardId-1", ShardCheckpoint("9"))

    assert mode(path) == 0o600
    assert FileShardCheckpoints(path).load() == {
        "shardId-0": ShardCheckpoint("7"),
        "shardId-1": ShardCheckpoint("9"),
    }


@pytest.mark.parametrize(
    "process_umask",
    [
        pytest.param(0o000, id="umask-000"),
        pytest.param(0o022, id="umask-022"),
        pytest.param(0o277, id="umask-277-takes-the-owner-write-bit"),
    ],
)
def test_the_modes_do_not_depend_on_the_umask(tmp_path, umask, process_umask):
    path = tmp_path / "state" / "fn-uuid.json"
    os.umask(process_umask)

    FileShardCheckpoints(path, fsync=True).save("shardId-0", ShardCheckpoint("42"))

    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700


def test_a_temporary_file_left_by_a_killed_runner_does_not_block_the_next_save(tmp_path):
    # A runner killed mid-write leaves its temporary file; the next runner may get its pid
    # (containers reuse them).
    path = tmp_path / "fn-uuid.json"
    stale = tmp_path / f".{path.name}.{os.getpid()}.tmp"
    stale.write_text("{half a check")

    FileShardCheckpoints(path).save("shardId-0", ShardCheckpoint("42"))

    assert not stale.exists()
    assert FileShardCheckpoints(path).load() == {"shardId-0": ShardCheckpoint("42")}
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


# --- the runner, against the endpoint -----------------------------------------------------


def test_the_runner_keeps_its_state_dir_owner_only(harness):
    # Given a state dir that does not exist yet, under a parent that does not either
    harness.state_dir = harness.tmp_path / "runs" / "state"
    arn = harness.create_stream()
    harness.put([("k", "r0"), ("k", "r1")])
    function = harness.create_function("esm_handlers.record")

    # When the runner settles a batch
    harness.run(function, [mapping(arn)])

    # Then its checkpoint file and the directories it created are its owner's only
    (state_file,) = harness.state_dir.iterdir()
    assert json.loads(state_file.read_text())["shards"]
    assert mode(state_file) == 0o600
    assert mode(harness.state_dir) == 0o700
    assert mode(harness.state_dir.parent) == 0o700
