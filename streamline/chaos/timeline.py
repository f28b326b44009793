"""The chaos run's picture: events applied per second, IteratorAge per shard, and the
faults, on one time axis (matplotlib, a dev dependency; no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on CI or over SSH
import matplotlib.pyplot as plt  # noqa: E402 (after the backend is chosen)

# The faults drawn as marks, in this order from the top; each kind has its own row.
_FAULT_ROWS = (
    "runner kill",
    "handler crash",
    "handler timeout",
    "shard split",
    "shard merge",
    "checkpoint table outage",
    "duplicate delivery",
    "stale invocation",
    "record failure",
    "wire: throttle",
    "wire: server error",
    "wire: dropped before",
    "wire: dropped after",
)


def rates(samples: list[tuple[float, int]]) -> list[tuple[float, float]]:
    """(t, events/s) between consecutive (t, applied so far) samples."""
    points = []
    for (t0, n0), (t1, n1) in zip(samples, samples[1:], strict=False):
        if t1 > t0:
            points.append((t1, max(0, n1 - n0) / (t1 - t0)))
    return points


def draw(timeline, path: Path, title: str = "") -> None:
    figure, (applied, ages, faults) = plt.subplots(
        3, 1, figsize=(12, 8), sharex=True, gridspec_kw={"height_ratios": [2, 2, 1.4]}
    )
    with timeline.lock:
        applied_samples = list(timeline.applied)
        age_samples = {shard: list(points) for shard, points in timeline.iterator_age.items()}
        fault_marks = list(timeline.faults)
    points = rates(applied_samples)
    if points:
        applied.plot(*zip(*points, strict=True), color="tab:green", linewidth=1)
    applied.set_ylabel("events applied / s")
    applied.grid(alpha=0.3)
    for shard, series in sorted(age_samples.items()):
        times, values = zip(*series, strict=True)
        ages.plot(times, [v / 1000 for v in values], linewidth=1, label=shard)
    ages.set_ylabel("IteratorAge (s)")
    ages.grid(alpha=0.3)
    if age_samples:
        ages.legend(fontsize=6, ncol=4, loc="upper right")
    rows = [kind for kind in _FAULT_ROWS if any(k == kind for _, k in fault_marks)]
    rows += sorted({k for _, k in fault_marks} - set(rows))
    for row, kind in enumerate(rows):
        times = [t for t, k in fault_marks if k == kind]
        faults.scatter(times, [row] * len(times), marker="|", s=80, linewidth=1)
    faults.set_yticks(
        range(len(rows)),
        [f"{k} ({sum(1 for _, x in fault_marks if x == k)})" for k in rows],
        fontsize=7,
    )
    faults.set_xlabel("seconds since the start")
    faults.grid(alpha=0.3, axis="x")
    if title:
        figure.suptitle(title, fontsize=8, wrap=True)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
