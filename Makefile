# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench fmt clean cluster

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,redis,postgres,nats]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/segue serve --data ./segue-data --demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider

# The end-to-end suite against clusters: every test server is 2 API processes and 2 workers
# on the local PostgreSQL, NATS JetStream and Redis (docs/scaling.md).
cluster: $(STAMP)
	SEGUE_TEST_CLUSTER=1 $(BIN)/python -m pytest -q -p no:cacheprovider tests/e2e

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) segue-data .pytest_cache .mypy_cache .ruff_cache
