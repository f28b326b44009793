"""The runner's per-shard status (esm/stats.py): a live table on a terminal, and otherwise the
plain lines the chaos run parses, unchanged. No server needed."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from esm.sources import StreamRecord
from esm.stats import LIVE_REFRESH_S, ShardStats, StatusBoard
from streamline.chaos.run import _FINISHED, _ITERATOR_AGE


def busy_shard(now_s: float = 100.0) -> ShardStats:
    """A shard 1.5 s behind, with 3 records processed in 2 invocations, one of them failed."""
    stats = ShardStats("orders", "shardId-000000000000")
    records = [StreamRecord(str(n), "k", arrival_s=now_s - 1.5, event_json="{}") for n in range(3)]
    stats.invoked(failed=True, records=3)
    stats.invoked(failed=False, records=3)
    stats.processed(records, now_s)
    return stats


def test_the_plain_line_is_the_one_the_chaos_run_reads():
    line = busy_shard().progress_line(100.0)

    assert line.startswith("[esm] orders shardId-000000000000: 3 records (")
    assert _ITERATOR_AGE.search(line).groups() == ("orders", "shardId-000000000000", "1500")
    assert "2 invocations, 1 errors, 0 retries; events 0 polled" in line


def test_a_finished_shard_says_so_in_the_plain_line():
    stats = busy_shard()
    stats.finished = True

    assert _FINISHED.search(stats.progress_line(100.0)) is not None


def test_not_on_a_terminal_the_board_prints_a_plain_line_per_shard():
    stream = io.StringIO()
    board = StatusBoard(stream, interval_s=10.0)

    board.show([busy_shard().status(100.0), ShardStats("orders", "shardId-1").status(100.0)])
    board.close()

    lines = stream.getvalue().splitlines()
    assert not board.live
    assert [line.split(":")[0] for line in lines] == [
        "[esm] orders shardId-000000000000",
        "[esm] orders shardId-1",
    ]


def test_on_a_terminal_the_board_draws_one_table_of_every_shard():
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, force_interactive=True, width=160)
    board = StatusBoard(screen, interval_s=10.0, live=True, console=console)

    board.show([busy_shard().status(100.0)])
    board.show([busy_shard().status(100.0)])  # redrawn in place, not printed again
    board.close()

    drawn = screen.getvalue()
    for column in ("shard", "records/s", "IteratorAge ms", "invocations", "errors"):
        assert column in drawn
    assert "shardId-000000000000" in drawn and "1,500" in drawn
    assert "[esm]" not in drawn


@pytest.mark.parametrize(
    ("live", "interval_s", "expected_s"),
    [
        pytest.param(False, 10.0, 10.0, id="plain-every-interval"),
        pytest.param(True, 10.0, LIVE_REFRESH_S, id="table-at-least-every-second"),
        pytest.param(True, 0.25, 0.25, id="table-as-often-as-asked"),
        pytest.param(True, 0.0, 0.0, id="none-asked-none-shown"),
    ],
)
def test_how_often_the_status_is_shown(live, interval_s, expected_s):
    board = StatusBoard(io.StringIO(), interval_s, live=live, console=Console(file=io.StringIO()))

    assert board.interval_s == expected_s


def test_the_status_is_due_once_per_interval():
    board = StatusBoard(io.StringIO(), interval_s=10.0, live=False)
    start = board._next_s

    assert [board.due(start - 1), board.due(start), board.due(start + 5)] == [False, True, False]
    assert board.due(start + 10)


def test_a_pipe_gets_the_plain_lines_even_when_force_color_is_set(monkeypatch):
    # The chaos run reads the runner's output from a pipe: FORCE_COLOR must not turn it live.
    monkeypatch.setenv("FORCE_COLOR", "1")

    assert not StatusBoard(io.StringIO(), interval_s=1.0).live
