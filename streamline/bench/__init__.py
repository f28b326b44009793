"""`make bench`: every benchmark of the project, one JSON object per line.

Each module listed in BENCH_MODULES exposes `run() -> Iterator[dict]`; every dict has a
"name" and its figures.
"""

from __future__ import annotations

import importlib
import json
import sys

BENCH_MODULES = ["streamline.bench.processor", "streamline.bench.esm"]


def main(argv: list[str]) -> int:
    wanted = set(argv)
    for module_name in BENCH_MODULES:
        short = module_name.rsplit(".", 1)[-1].removeprefix("bench_")
        if wanted and short not in wanted:
            continue
        module = importlib.import_module(module_name)
        for result in module.run():
            print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
