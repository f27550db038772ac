# Two commands: `make app` (start ThreadX on the sample data) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PORT   ?= 8501
# Loopback only by default: the workstation has no login. HOST=0.0.0.0 exposes it (README).
HOST   ?= 127.0.0.1
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: app test venv bench clean e2e

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,ui]"
	@touch $(STAMP)

app: $(STAMP)
	$(PY) -m threadx.data
	$(PY) -m threadx.warmup
	$(PY) -m streamlit run app.py --server.address $(HOST) --server.port $(PORT) --server.headless true --browser.gatherUsageStats false

test: $(STAMP)
	$(PY) -m threadx.warmup  # compile the kernels once, before tests whose job processes would each wait for it
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/bench_backtest.py

clean:
	rm -rf $(VENV) indicators_cache .pytest_cache
