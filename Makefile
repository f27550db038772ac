# Two commands: `make app` (start ThreadX on the sample data) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
# Address and port come from the settings (app.address, default 127.0.0.1 - loopback only: the
# workstation has no login; app.port, default 8501; see `threadx config show`). PORT=8502 or
# HOST=0.0.0.0 on the make command line override them (README, "Serving on a network").
PORT   ?=
HOST   ?=
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: app test faults venv bench clean e2e

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,ui]"
	@touch $(STAMP)

app: $(STAMP)
	$(PY) -m threadx.data
	$(PY) -m threadx.warmup
	$(PY) -m threadx.cli app $(if $(HOST),--host $(HOST)) $(if $(PORT),--port $(PORT))

test: $(STAMP)
	$(PY) -m threadx.warmup  # compile the kernels once, before tests whose job processes would each wait for it
	$(PY) -m pytest -q -m "not fault"

faults: $(STAMP)  # the long fault tests (pytest -m fault): killed workers, lost Dask workers, killed groups
	$(PY) -m threadx.warmup
	$(PY) -m pytest -q -m fault

bench: $(STAMP)
	$(PY) benchmarks/bench_backtest.py

clean:
	rm -rf $(VENV) indicators_cache .pytest_cache
