"""`make bench`: every benchmark of the project, one JSON object per line.

Each module named in BENCHMARKS exposes `run() -> Iterator[dict]`; every dict has a "name"
and its figures.
"""

from __future__ import annotations

import importlib
import json
import sys

from streamline.arguments import OneLineParser

BENCHMARKS = {
    "processor": "streamline.bench.processor",  # the ordered processor against Powertools
    "esm": "streamline.bench.esm",  # the local runner against a bare GetRecords loop
    # exactly-once per-key updates: keyed state against Powertools' idempotency, at 0/10 ms
    "throughput": "streamline.bench.throughput",
}


def wanted_benchmarks(argv: list[str] | None = None) -> set[str]:
    """The benchmarks the command line names (all when none); bad arguments: one line, exit 2."""
    parser = OneLineParser(
        prog="bench.py",
        description="Run the benchmarks; print one JSON object per line.",
        epilog="example: python scripts/bench.py esm",
    )
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help=f"one of {', '.join(BENCHMARKS)} (default: all)"
    )
    wanted = set(parser.parse_args(argv).names)
    unknown = wanted - set(BENCHMARKS)
    if unknown:
        parser.error(
            f"unknown benchmark(s): {', '.join(map(repr, sorted(unknown)))}; "
            f"choose from {', '.join(BENCHMARKS)}"
        )
    return wanted or set(BENCHMARKS)


def main(argv: list[str] | None = None) -> int:
    wanted = wanted_benchmarks(argv)
    for short, module_name in BENCHMARKS.items():
        if short not in wanted:
            continue
        module = importlib.import_module(module_name)
        for result in module.run():
            print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
