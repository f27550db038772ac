"""``python -m threadx.cli ...``: the ``threadx`` command (:func:`threadx.cli.main`), as ``make app`` starts it."""
import sys

from threadx.cli import main

sys.exit(main())
