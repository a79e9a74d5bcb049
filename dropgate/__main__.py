"""``python -m dropgate ...``: the ``dropgate`` command."""

import sys

from dropgate.cli import main

sys.exit(main())
