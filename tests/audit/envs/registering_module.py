"""A module that registers a Gymnasium env when imported (what a user's own `module:Env` id names)."""

import gymnasium as gym

IMPORTED = True
if "imitaudit-test/Registered-v0" not in gym.registry:
    gym.register("imitaudit-test/Registered-v0", entry_point="gymnasium.envs.toy_text.frozen_lake:FrozenLakeEnv")
