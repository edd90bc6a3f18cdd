"""``python -m benchmarks``: run the suite (``./scripts/bench`` is the documented way)."""

import sys

from benchmarks.cli import main

sys.exit(main())
