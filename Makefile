# The README's commands. Each target builds .venv if needed: torch first, from the CPU wheel on disk.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: run test bench install clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/imitaudit quickstart --episodes 500 --out out/quickstart

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) -m bench.envs --out BENCHMARKS.md
	$(PY) -m bench.rollout --out BENCHMARKS.md
	$(PY) -m bench.train --out BENCHMARKS.md --adv-steps 200
	$(PY) -m bench.peer_gail --out BENCHMARKS.md
	$(PY) -m bench.detect --out BENCHMARKS.md

clean:
	rm -rf $(VENV) out .pytest_cache
