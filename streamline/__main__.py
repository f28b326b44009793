"""`python -m streamline`: the `streamline` command (streamline/cli.py)."""

import sys

from streamline.cli import main

sys.exit(main())
