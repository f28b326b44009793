"""`python scripts/load.py`: the load generator.

Thin entry point for `streamline.tools.load`; --help for its options.
"""

import sys

from streamline.tools.load import main

if __name__ == "__main__":
    sys.exit(main())
