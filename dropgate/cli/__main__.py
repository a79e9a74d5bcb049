"""``python -m dropgate.cli``, the same as ``python -m dropgate`` (kept for scripts that use it)."""

import sys

from dropgate.cli import main

sys.exit(main())
