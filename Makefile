# One entry point for operators and CI. `make test` works on a fresh machine: it creates .venv,
# installs everything and runs the linters and the test suite.
VENV ?= .venv
PYTHON ?= python3
# The test suite runs on the CPU. Operators with a GPU get a CUDA build of torch from `pip install .`.
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: test lint run bench

$(BIN)/inpaintbot: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

lint: $(BIN)/inpaintbot
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy bot engine
	$(BIN)/lint-imports

test: lint
	$(BIN)/pytest -q

run: $(BIN)/inpaintbot
	$(BIN)/inpaintbot run

bench: $(BIN)/inpaintbot
	$(BIN)/python -m bench.engine_overhead
	$(BIN)/python -m bench.queue_throughput
	$(BIN)/python -m bench.discord_latency
	$(BIN)/python -m bench.outpaint
	$(BIN)/python -m bench.scale_out
