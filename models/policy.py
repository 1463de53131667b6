"""The policy interface the audit runs: what a registered torch imitator (:class:`models.imitator.Imitator`) and an
ONNX graph (:class:`models.onnx_imitator.OnnxImitator`) both provide, so nothing downstream asks which one it has."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from torch import Tensor, nn

from models.imitator import ImitatorConfig


@runtime_checkable
class Policy(Protocol):
    """A discrete-action policy with named activation taps.

    Attributes:
        arch: its architecture's name (``onnx`` for a graph).
        config: obs_dim, n_actions and the widths reports show.
        recurrent: whether it carries a state from step to step.
        tap_names: the taps it exposes (``encoder``, ``core``, ``head``, or those of a graph).
    """

    @property
    def arch(self) -> str: ...

    @property
    def config(self) -> ImitatorConfig: ...

    @property
    def recurrent(self) -> bool: ...

    @property
    def tap_names(self) -> tuple[str, ...]: ...

    @property
    def training(self) -> bool: ...

    def train(self, mode: bool = True) -> Any: ...

    @property
    def taps(self) -> dict[str, nn.Module]:
        """Tap name -> module whose output is the activation read (a forward hook records it)."""
        ...

    def tap_sizes(self) -> dict[str, int]:
        """Tap name -> features per step."""
        ...

    def initial_state(self, batch: int) -> Any:
        """State before the first step of ``batch`` episodes (None for memoryless policies)."""
        ...

    def select_state(self, state: Any, rows: Tensor) -> Any:
        """The state of batch rows ``rows`` [K] int64 (repeats allowed)."""
        ...

    def __call__(self, obs: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        """Logits [B, A] of one step obs [B, D], and the next state."""
        ...

    def sequence(self, obs: Tensor, mask: Tensor | None = None) -> Tensor:
        """Logits [B, T, A] of whole episodes obs [B, T, D] (mask [B, T]: padded steps skipped)."""
        ...

    def eval(self) -> Any: ...


def check_obs(policy: Policy, obs: Tensor, dims: int) -> None:
    """Refuse observations that are not [B, D] (``dims`` 2) or [B, T, D] (3) with the policy's D.

    Raises:
        ValueError: one line with the shape wanted and the shape given.
    """
    if obs.dim() != dims or obs.shape[-1] != policy.config.obs_dim:
        want = "[B, D]" if dims == 2 else "[B, T, D]"
        raise ValueError(f"{policy.arch}: obs must be {want} with D={policy.config.obs_dim}, got {tuple(obs.shape)}")
