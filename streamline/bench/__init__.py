"""`make bench`: every benchmark of the project, one JSON object per line.

Each module named in BENCHMARKS exposes `run() -> Iterator[dict]`; every dict has a "name"
and its figures.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys

BENCHMARKS = {
    "processor": "streamline.bench.processor",  # the ordered processor against Powertools
    "esm": "streamline.bench.esm",  # the local runner against a bare GetRecords loop
    # exactly-once per-key updates: keyed state against Powertools' idempotency, at 0/10 ms
    "throughput": "streamline.bench.throughput",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
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
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    wanted = wanted or set(BENCHMARKS)
    for short, module_name in BENCHMARKS.items():
        if short not in wanted:
            continue
        module = importlib.import_module(module_name)
        for result in module.run():
            print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
