"""``python -m rqgmm.cli``: the command line (used by torchrun and the tests)."""

import sys

from rqgmm.cli import main

sys.exit(main())
