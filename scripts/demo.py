"""`python scripts/demo.py`: the whole pipeline on the embedded emulator.

Thin entry point for `streamline.demo`; --help for its options.
"""

import sys

from streamline.demo import main

if __name__ == "__main__":
    sys.exit(main())
