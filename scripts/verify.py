"""`python scripts/verify.py`: the pipeline verifier.

Thin entry point for `streamline.tools.verify`; --help for its options.
"""

import sys

from streamline.tools.verify import main

if __name__ == "__main__":
    sys.exit(main())
