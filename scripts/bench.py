"""`python scripts/bench.py`: every benchmark, one JSON object per line.

Thin entry point for `streamline.bench`; name `processor` or `esm` to run one.
"""

import sys

from streamline.bench import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
