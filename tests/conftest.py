"""Shared fixtures: a seeded rng and the built-in env ids; one torch thread per test worker."""

import os

import numpy as np
import pytest
import torch

import audit

# `make test` runs one pytest-xdist worker per core: torch in each worker, and every CLI, server or worker child it
# starts (they read IMITAUDIT_THREADS), use one thread, so the workers never oversubscribe the cores. Assigned, not
# defaulted: the controller loaded this file first and set the serial default below, which every worker inherits.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["IMITAUDIT_THREADS"] = "1"
    torch.set_num_threads(1)
# Serial: every process the tests start uses one thread per core, as torch here does. The default decision reads what
# else is running, and two processes of one comparison (a report local and on Ray) must not decide differently.
os.environ.setdefault("IMITAUDIT_THREADS", str(len(os.sched_getaffinity(0))))

ENV_IDS = list(audit.WORLDS)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(params=ENV_IDS, ids=lambda e: e.split("/")[-1])
def env_id(request) -> str:
    return request.param
