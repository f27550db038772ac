"""`python -m threadx.data`: write the synthetic sample if it is missing (run by `make app`).

A package entry point rather than `python -m threadx.data.synthetic`, which runpy would
execute a second time after the package import (a RuntimeWarning at every start)."""
from threadx.data.synthetic import main

main()
