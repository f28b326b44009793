"""The runner's injected delivery faults (esm/faults.py): what Lambda's at-least-once
delivery allows, done on purpose so a handler can be tested against it."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest
from conftest import REPO_ROOT, mapping

from esm import StartingPosition
from esm.faults import DUPLICATE_DELIVERY, DeliveryFaults


def test_a_duplicate_delivery_invokes_every_batch_again_after_it_returned(harness, caplog):
    arn = harness.create_stream()
    harness.put([(f"k{i % 3}", f"r{i}") for i in range(12)])
    function = harness.create_function("esm_handlers.record")

    with caplog.at_level(logging.WARNING, logger="esm"):
        summary = harness.run(
            function,
            [mapping(arn, batch_size=4, starting_position=StartingPosition.TRIM_HORIZON)],
            faults=DeliveryFaults(duplicate_rate=1.0),
        )

    invocations = harness.invocations()
    batches = [entry["sequenceNumbers"] for entry in invocations]
    # Each batch twice in a row, the copy after the original returned; the checkpoint moves
    # once per batch, so the next batch comes after both.
    assert len(batches) == 6
    assert batches[0::2] == batches[1::2]
    for first, second in zip(invocations[0::2], invocations[1::2], strict=True):
        assert second["start"] >= first["start"]
    assert summary.records == 12
    assert [r.message for r in caplog.records].count(f"injected fault: {DUPLICATE_DELIVERY}") == 3


def test_a_stale_invocation_runs_beside_the_fresh_one_on_another_worker(harness, monkeypatch):
    arn = harness.create_stream()
    harness.put([("k", "r0"), ("k", "r1")])
    function = harness.create_function("esm_handlers.record", environment={"ESM_TEST_SLEEP": "0.5"})

    harness.run(
        function,
        [mapping(arn, batch_size=10, starting_position=StartingPosition.TRIM_HORIZON)],
        faults=DeliveryFaults(stale_rate=1.0),
    )

    stale, fresh = sorted(harness.invocations(), key=lambda entry: entry["start"])
    assert stale["sequenceNumbers"] == fresh["sequenceNumbers"]
    assert stale["pid"] != fresh["pid"]  # two workers at once
    assert fresh["start"] - stale["start"] < 0.5  # the second started while the first slept


@pytest.mark.parametrize("rate", ["-0.1", "1.5", "nan", "often"])
def test_a_fault_rate_outside_0_to_1_is_one_line_and_exit_2(rate):
    result = subprocess.run(
        [sys.executable, "-m", "esm", "run", "--stream-arn", "x", "--handler", "m.f",
         "--inject-duplicate-delivery", rate],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "--inject-duplicate-delivery" in result.stderr.strip().splitlines()[-1]
