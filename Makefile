# loraforge developer entry points. Each of these does all the set-up on a fresh machine:
#   make run    the main job on the embedded default (local stack, tiny model, example footage)
#   make test   the static checks, then the whole test suite (unit + integration against real
#               NATS and S3 servers)
#   make check  the static checks alone: ruff's rules and formatter, mypy (pyproject.toml)

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
EXTRAS ?= all
STAMP := $(VENV)/.installed-$(EXTRAS)
PYTEST_ARGS ?=
# Test processes for `make test` (pytest-xdist): the suite mostly waits on real servers and
# service processes; on 2 cores three workers ran it in 11 min against over 18 min of CPU
# (four: slower). `--dist loadfile` keeps a file's tests on one worker, so its module fixtures
# (a trained run, a started stack, measured clips) are built once. (`loadgroup` with
# xdist_group marks did nothing under pytest 9.2: xdist 3.8 renames `item._nodeid`, which
# pytest no longer reads, so a file's tests were spread over the workers.)
TEST_WORKERS ?= 3

.PHONY: install proto proto-check check test test-unit test-integration test-faults run up down status bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# Reinstall only when the dependency list changes.
$(STAMP): pyproject.toml | $(PY)
	$(PIP) install --quiet -e ".[$(EXTRAS)]"
	@touch $(STAMP)

install: $(STAMP)

proto: $(STAMP)
	$(PY) scripts/gen_proto.py

proto-check: $(STAMP)
	$(PY) scripts/gen_proto.py --check

# Static checks; each tool reads its configuration from pyproject.toml ([tool.ruff], [tool.mypy]).
check: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# pytest exits 5 when it collected nothing (e.g. a filter matched no test): not a failure.
test: $(STAMP) proto-check check
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then rc=0; fi; exit $$rc

test-unit: $(STAMP)
	$(PY) -m pytest -q tests/unit $(PYTEST_ARGS)

test-integration: $(STAMP)
	$(PY) -m pytest -q tests/integration $(PYTEST_ARGS)

# Fault injection on one real local stack (kill -9, NATS restart, S3 outage, poison, tenants);
# also part of `make test` (tests/faults is under pytest's testpaths).
test-faults: $(STAMP)
	$(PY) -m pytest -q tests/faults $(PYTEST_ARGS)

run: $(STAMP)
	$(VENV)/bin/loraforge run $(ARGS)

up: $(STAMP)
	$(VENV)/bin/loraforge stack up

down: $(STAMP)
	$(VENV)/bin/loraforge stack down

status: $(STAMP)
	$(VENV)/bin/loraforge stack status

bench: $(STAMP)
	$(PY) bench/ingest.py
	$(PY) bench/curation.py

clean:
	rm -rf build dist *.egg-info .pytest_cache
