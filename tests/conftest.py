"""Shared fixtures: a seeded rng and the built-in env ids."""

import numpy as np
import pytest

import audit

ENV_IDS = list(audit.WORLDS)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(params=ENV_IDS, ids=lambda e: e.split("/")[-1])
def env_id(request) -> str:
    return request.param
