"""The chaos run, small (`python -m streamline.chaos --quick`): a few thousand events over
both sources and four Kinesis shards, every kind of fault at least once, and not one event
lost, applied twice or out of order. `make chaos` is the same at 100,000 events."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from streamline.paths import REPO_ROOT

pytestmark = pytest.mark.integration

SEED = 20261207
EVENTS = 2000
TIMEOUT_S = 420

# Every kind the run injects, by the name it counts it under.
FAULT_KINDS = {
    "record failure",
    "handler crash",
    "handler timeout",
    "runner kill",
    "duplicate delivery",
    "stale invocation",
    "throttle",
    "server error",
    "dropped before",
    "dropped after",
    "outage",
}
LINE = re.compile(
    r"^chaos: (\d+) events, (\d+) keys, 4 shards, 1 split, 1 merge, (\d+) runner kills, "
    r"(\d+) handler crashes, (\d+) handler timeouts, (\d+) injected errors -> (\d+) applied in "
    r"order, (\d+) parked, 0 lost, 0 duplicated, 0 out of order$",
    re.MULTILINE,
)


def test_nothing_is_lost_duplicated_or_reordered_under_every_fault(tmp_path):
    out = tmp_path / "chaos"
    result = subprocess.run(
        [sys.executable, "-m", "streamline.chaos", "--quick", "--events", str(EVENTS),
         "--seed", str(SEED), "--out", str(out), "--timeout", "240"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=TIMEOUT_S,
    )  # fmt: skip

    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    match = LINE.search(result.stdout)
    assert match, result.stdout[-2000:]
    events, _, kills, crashes, timeouts, _, applied, parked = map(int, match.groups())
    assert events == EVENTS and applied + parked == EVENTS
    assert parked > 0 and kills >= 1 and crashes >= 1 and timeouts >= 1
    summary = json.loads((out / "summary.json").read_text())
    assert {kind for kind, n in summary["faults"].items() if n} >= FAULT_KINDS
    assert (out / "timeline.png").stat().st_size > 10_000
    assert "Traceback" not in result.stdout + result.stderr
