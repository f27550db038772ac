"""``python -m threadx.cli ...``: the ``threadx`` command (:func:`threadx.cli.main`), as ``make app`` starts it."""
import sys

from threadx.cli import main

if __name__ == "__main__":
    sys.exit(main())
