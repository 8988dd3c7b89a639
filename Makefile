# Every target works as the first command on a fresh clone: each depends on the venv it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_VENV := .venv-bench
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install up test lint fmt bench synth layers demo reset clean fuzz

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[infra,dev]'
	@touch $(STAMP)

up: $(STAMP)
	$(BIN)/loopml local up

demo: $(STAMP)
	$(BIN)/loopml demo

# Against the stack `make up` serves (run it in another terminal first).
fuzz: $(STAMP)
	$(BIN)/loopml fuzz

reset: $(STAMP)
	$(BIN)/loopml local reset

test: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/mypy --explicit-package-bases functions/*/app.py infra
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff format --check . && $(BIN)/ruff check . && $(BIN)/mypy
	$(BIN)/mypy --explicit-package-bases functions/*/app.py infra

fmt: $(STAMP)
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

# Benchmarks compare against Evidently, which pins pandas < 3 and weighs about 600 MiB: it lives in its own
# venv. (The dev venv has pandas for registering DataFrame pipelines; the Lambda layers never do.)
$(BENCH_VENV)/.installed: pyproject.toml
	@test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install -q --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install -q 'evidently==0.7.23' 'pandas<3'
	@touch $@

bench: $(STAMP) $(BENCH_VENV)/.installed
	$(BIN)/loopml bench all --evidently-python $(BENCH_VENV)/bin/python

synth: $(STAMP)
	$(BIN)/python infra/app.py

layers: $(STAMP)
	$(BIN)/python layers/build.py

clean:
	rm -rf $(VENV) $(BENCH_VENV) cdk.out build .loopml
