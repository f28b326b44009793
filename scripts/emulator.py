"""`python scripts/emulator.py`: the embedded emulator launcher (start, stop, env).

Thin entry point for `streamline.emulator`; --help for its options.
"""

import sys

from streamline.emulator import main

if __name__ == "__main__":
    sys.exit(main())
