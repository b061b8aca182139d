# Two commands a new user needs: `make run` and `make test`. Everything else is a step of theirs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SPEC ?= examples/mlp-digits.yaml
# onnx: ?format=onnx exports (about 120 MB); drop it with EXTRAS=dev
EXTRAS ?= dev,onnx

.PHONY: install run train test lint bench clean

$(BIN)/nnforge: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[$(EXTRAS)]'
	touch $@

install: $(BIN)/nnforge

run: install  ## the API and a worker (one job per core) on SQLite + a filesystem broker under .nnforge/ (Ctrl-C stops both)
	$(BIN)/nnforge serve

train: install  ## train a spec locally, without the service
	$(BIN)/nnforge train $(SPEC)

test: install
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check app models workers nnforge tests bench
	$(BIN)/mypy

bench: install  ## every benchmark, under 10 minutes (needs PostgreSQL, Redis and wrk, as `make test` does)
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) .nnforge .pytest_cache .mypy_cache .ruff_cache
