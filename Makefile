# Two commands set everything up: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
DEBIAN_TEST_PACKAGES := dcmtk orthanc orthanc-dicomweb postgresql

.PHONY: run test lint bench clean debian-test-packages

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(TEST_STAMP)

run: $(STAMP)
	$(BIN)/dicomgate serve

debian-test-packages:
	@missing=""; for p in $(DEBIAN_TEST_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

lint: $(TEST_STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

test: $(TEST_STAMP) debian-test-packages lint
	$(BIN)/python -m pytest -n auto -q

# Benchmarks print ratios against reference systems measured in the same run (not part of test).
# Each one deletes its data when it ends; on ext4 that slows file creation for a few minutes
# (bench/README.md), so the next one starts after BENCH_SETTLE seconds.
BENCH_SETTLE ?= 360
bench: $(TEST_STAMP) debian-test-packages
	$(BIN)/pip install --quiet dicognito
	$(BIN)/python bench/bench_store.py
	sleep $(BENCH_SETTLE)
	$(BIN)/python bench/bench_deid.py --count 300
	$(BIN)/python bench/bench_retrieve.py
	sleep $(BENCH_SETTLE)
	$(BIN)/python bench/bench_archive_retrieve.py
	sleep $(BENCH_SETTLE)
	$(BIN)/python bench/bench_sources.py --small 1000 --large 300
	sleep $(BENCH_SETTLE)
	$(BIN)/python bench/bench_dicomweb.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
