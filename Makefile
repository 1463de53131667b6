# The README's commands. Each target builds .venv if needed: torch first, from the CPU wheel on disk.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
PORT ?= 8000

.PHONY: run test test-long test-fast lint bench install system-deps clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev,ray]'
	touch $(STAMP)

install: $(STAMP)

# The service's tests need a real PostgreSQL and a real Chromium: Debian's packages.
system-deps:
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends postgresql chromium; \
	fi

# The service on 127.0.0.1 (SQLite, in-process worker), seeded with a demo project; prints the dashboard URL and a token.
run: $(STAMP)
	$(VENV)/bin/imitaudit serve --demo --port $(PORT)

# The house rules first (seconds): ruff's lint (with a complexity limit) and format, and mypy; then every test.
lint: $(STAMP)
	$(VENV)/bin/ruff check audit models service bench tests
	$(VENV)/bin/ruff format --check audit models service bench tests
	$(VENV)/bin/mypy

# One pytest-xdist worker per core (one torch thread each, tests/conftest.py), a file's tests on one worker; then the
# Ray tests alone: their cluster and in-process drivers stay out of the parallel run (one xdist run with them in it
# lost a worker and hung). OMP_NUM_THREADS=1 is belt and braces: the second OpenMP thread each worker kept spinning
# came from the IMITAUDIT_THREADS the workers inherited (fixed in tests/conftest.py), not from OpenMP's default.
test: $(STAMP) system-deps lint
	OMP_NUM_THREADS=1 $(PY) -m pytest -n auto --dist loadfile --ignore tests/test_ray.py -m "not long" $(PYTEST_ARGS)
	$(PY) -m pytest tests/test_ray.py -m "not long" $(PYTEST_ARGS)

# The end-to-end runs of minutes `make test` leaves out: the demo service trained from nothing, the interop guide's
# commands, the detection benchmark's zoo and audits on a Ray cluster.
test-long: $(STAMP) system-deps
	$(PY) -m pytest -m long $(PYTEST_ARGS)

# While editing: no real servers, no subprocesses of the CLI, no training beyond a few steps (the API through TestClient).
test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow" -q $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) -m bench.envs --out BENCHMARKS.md
	$(PY) -m bench.rollout --out BENCHMARKS.md
	$(PY) -m bench.continuous_rollout --out BENCHMARKS.md
	$(PY) -m bench.cheetah_time --out BENCHMARKS.md
	$(PY) -m bench.train --out BENCHMARKS.md --adv-steps 300
	$(PY) -m bench.peer_gail --out BENCHMARKS.md
	$(PY) -m bench.train_causes --out BENCHMARKS.md
	$(PY) -m bench.train_queries --out BENCHMARKS.md
	$(PY) -m bench.detect --out BENCHMARKS.md
	$(PY) -m bench.monitor --out BENCHMARKS.md
	$(PY) -m bench.monitor --zoo out/zoo --out BENCHMARKS.md
	$(PY) -m bench.validate --out BENCHMARKS.md
	$(PY) -m bench.service --out BENCHMARKS.md
	$(PY) -m bench.threads --out BENCHMARKS.md
	$(PY) -m bench.onnx --out BENCHMARKS.md
	$(PY) -m bench.scale --out BENCHMARKS.md
	$(PY) -m bench.power --out BENCHMARKS.md

clean:
	rm -rf $(VENV) out .pytest_cache
