"""imitaudit's science, public API: environments, demonstrator and demonstration datasets (more stages follow).

Importing ``audit`` registers the built-in Gymnasium environments.
"""

from audit.envs import WORLDS, resolve_env_id

__all__ = ["WORLDS", "resolve_env_id"]
