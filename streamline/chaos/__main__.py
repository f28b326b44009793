import sys

from streamline.chaos.run import main

sys.exit(main())
