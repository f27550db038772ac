"""``python -m threadx ...``: the ``threadx`` command (:func:`threadx.cli.main`)."""
from __future__ import annotations

import sys

from threadx.cli import main

if __name__ == "__main__":
    sys.exit(main())
