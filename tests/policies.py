"""Controllers a user would write for a non-gridworld env (named on the command line as ``tests.policies:NAME``)."""

import numpy as np


def _balance_at(obs: np.ndarray, x_target: float) -> int:
    # push towards where the pole falls, corrected by the cart's distance from its target and its speed
    return int(obs[2] + 0.5 * obs[3] + 0.05 * (obs[0] - x_target) + 0.1 * obs[1] > 0)


def balance(obs: np.ndarray) -> int:
    """CartPole-v1: balance the pole with the cart kept near the centre (return 500)."""
    return _balance_at(obs, 0.0)


def drift_right(obs: np.ndarray) -> int:
    """CartPole-v1: balance just as well (return 500), but with the cart drifted a metre to the right."""
    return _balance_at(obs, 1.0)
