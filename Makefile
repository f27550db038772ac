# Two commands: `make app` (start ThreadX on the sample data) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: app test venv bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

app: $(STAMP)
	$(PY) -m threadx.cli backtest --data sample:BTC_USDT-1h --strategy bb_atr --trades 5

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/bench_backtest.py

clean:
	rm -rf $(VENV) indicators_cache .pytest_cache
