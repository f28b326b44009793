"""`python scripts/replay.py`: the replay tool for parked and given-up records.

Thin entry point for `streamline.tools.replay`; --help for its options.
"""

import sys

from streamline.tools.replay import main

if __name__ == "__main__":
    sys.exit(main())
