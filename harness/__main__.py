"""``python -m harness`` is ``raft-harness``."""

import sys

from harness.cli import main

sys.exit(main())
