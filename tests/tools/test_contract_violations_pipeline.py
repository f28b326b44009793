"""Contract violations through the pipeline: load.py --poison-kind mixed over both sources,
the local ESM runner driving the demo handler (its model refuses `n` sent as a string),
verify.py finding each violation parked at once and each handler poison parked after its
retries, every other event applied once and in order."""

from __future__ import annotations

import json

import pytest

from streamline.tools import load, verify

pytestmark = pytest.mark.integration


def test_contract_violations_are_parked_at_once_and_verified_as_such(
    demo_stack, process_demo_stack, tmp_path, capsys
):
    manifest = tmp_path / "manifest.json"
    assert (
        load.main(
            [
                "--stack",
                demo_stack["path"],
                "--source",
                "both",
                "--count",
                "300",
                "--keys",
                "6",
                "--poison-fraction",
                "0.05",
                "--poison-kind",
                "mixed",
                "--seed",
                "3",
                "--manifest",
                str(manifest),
            ]
        )  # fmt: skip
        == 0
    )
    events = json.loads(manifest.read_text())["events"]
    poison = [e for e in events if e["poison"]]
    violations = [e for e in poison if e.get("poisonKind") == "contract"]
    assert {e["source"] for e in violations} == {"kinesis", "dynamodb"}
    assert len(violations) < len(poison)  # handler poison too

    process_demo_stack()

    code = verify.main([
        "--stack", demo_stack["path"], "--manifest", str(manifest),
        "--timeout", "30", "--settle", "5", "--poll", "0.5",
    ])  # fmt: skip

    out = capsys.readouterr().out
    assert code == 0, out
    assert (
        f"verified 300 events over 6 keys: {300 - len(poison)} applied in order, "
        f"{len(poison)} parked, 0 lost, 0 duplicated, 0 out of order"
    ) in out
    assert f"; {len(violations)} of the parked broke the event's contract" in out
