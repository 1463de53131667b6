"""Stable-Baselines3 policies as ONNX imitators, read without unpickling anything.

Sources:

- an SB3 algorithm's ``.zip`` (``model.save``): ``policy.pth`` is read with
  ``torch.load(weights_only=True)``; the ``data`` member is plain JSON, whose pickled fields
  (``:serialized:``) are never decoded: only the plain strings SB3 writes beside them are read
  (the policy class's module, ``policy_kwargs``' ``activation_fn`` and ``net_arch``);
- a policy's state dict (``torch.save(policy.state_dict(), "policy.pth")``), e.g. an
  ``imitation`` BC policy, which is an SB3 ``ActorCriticPolicy``.

Mapped: MLP actor-critic policies (PPO, A2C, ``imitation``'s BC/GAIL/AIRL) over discrete actions — logits are the
action net's output — and DQN Q-networks — logits are the Q-values (audit them with
``--actions greedy``: the policy is their argmax). Over ``Box`` actions: SAC actors, whose squashed Gaussian is
imitaudit's own (the mean and the log standard deviation, clamped as SAC clamps it, before ``tanh`` and the scaling
into the bounds), and TD3/DDPG actors, whose deterministic action is the mode of a Gaussian with the narrowest
standard deviation imitaudit allows (audit them with ``--actions greedy``). PPO/A2C over ``Box`` actions sample an
unsquashed Gaussian that the env clips, which is not the squashed one, so they are refused. Hidden widths come from
the weights; the activation from the zip, else ``activation`` (SB3's defaults: tanh for actor-critic, relu for DQN,
SAC and TD3).
"""

from __future__ import annotations

import io
import json
import os
import re
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models.onnx_export import export_module

MAX_MEMBER_BYTES = 256 * 1024**2
ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}


def _read_zip(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise ValueError(f"{path}: not a zip file (an SB3 model.save archive)") from None
    with zf:
        names = set(zf.namelist())
        if "policy.pth" not in names:
            raise ValueError(f"{path}: the zip has no policy.pth (not an SB3 model.save archive)")
        for member in ("policy.pth", "data"):
            if member in names and zf.getinfo(member).file_size > MAX_MEMBER_BYTES:
                raise ValueError(f"{path}: {member} is larger than {MAX_MEMBER_BYTES // 1024**2} MiB")
        state = _weights(zf.read("policy.pth"), f"{path}:policy.pth")
        data: dict[str, Any] = {}
        if "data" in names:
            try:
                data = json.loads(zf.read("data"))
            except ValueError:
                raise ValueError(f"{path}: the zip's data member is not JSON") from None
    return state, data if isinstance(data, dict) else {}


def _is_sb3_archive(path: Path) -> bool:
    """An SB3 model.save zip (a ``policy.pth`` member), not a torch.save file (also a zip, of ``*/data.pkl``)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    return "policy.pth" in names or not any(n.endswith("/data.pkl") for n in names)


def _weights(raw: bytes, name: str) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch's refusal of pickled classes, or a broken file
        first = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip().splitlines()[0][:160]
        raise ValueError(
            f"{name}: not a plain state dict of tensors ({first}); save one with "
            "torch.save(policy.state_dict(), 'policy.pth')"
        ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{name}: not a state dict of tensors")
    return state


def _plain(data: dict[str, Any], key: str, field: str) -> Any:
    """A plain field SB3 wrote beside a pickled one (``data[key][field]``), or None; the pickle is never read."""
    entry = data.get(key)
    return entry.get(field) if isinstance(entry, dict) else None


def _layers(state: dict[str, torch.Tensor], prefix: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(weight, bias) of the Linear layers under ``prefix`` (``prefix.0``, ``prefix.2``, ...), in order."""
    idx = sorted({int(m.group(1)) for k in state if (m := re.fullmatch(re.escape(prefix) + r"\.(\d+)\.weight", k))})
    return [(state[f"{prefix}.{i}.weight"], state[f"{prefix}.{i}.bias"]) for i in idx]


def _mlp(
    layers: list[tuple[torch.Tensor, torch.Tensor]], activation: type[nn.Module], *, last: bool = False
) -> nn.Sequential:
    """Linear layers with ``activation`` between them (and after the last with ``last``)."""
    mods: list[nn.Module] = []
    for i, (w, b) in enumerate(layers):
        if w.dim() != 2 or b.shape != w.shape[:1]:
            raise ValueError("a linear layer's weight and bias do not fit each other")
        lin = nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            lin.weight.copy_(w.float())
            lin.bias.copy_(b.float())
        mods.append(lin)
        if last or i < len(layers) - 1:
            mods.append(activation())
    return nn.Sequential(*mods)


SAC_LOG_STD = (-20.0, 2.0)
"""SB3's SAC clamps its actor's log standard deviation here (``LOG_STD_MIN``, ``LOG_STD_MAX``)."""


class _SquashedGaussian(nn.Module):
    """A SAC actor: obs -> [mean, log std] per dimension, before the squash."""

    def __init__(self, *, latent: nn.Sequential, mu: nn.Sequential, log_std: nn.Sequential) -> None:
        super().__init__()
        self.latent, self.mu, self.log_std = latent, mu, log_std

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        h = self.latent(obs)
        return torch.cat([self.mu(h), self.log_std(h).clamp(*SAC_LOG_STD)], dim=-1)


class _Deterministic(nn.Module):
    """A TD3/DDPG actor without its final ``tanh``: obs -> [pre-squash action, the narrowest log std]."""

    def __init__(self, *, body: nn.Sequential, log_std: float) -> None:
        super().__init__()
        self.body, self.narrow = body, float(log_std)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        u = self.body(obs)
        return torch.cat([u, torch.full_like(u, self.narrow)], dim=-1)


def kind_of(state: dict[str, torch.Tensor]) -> str:
    """Which SB3 policy a state dict holds: ``sac``, ``td3``, ``actor-critic`` or ``dqn`` (``unknown`` otherwise).

    Raises:
        ValueError: a layout that is recognised but not mapped (one line saying why).
    """
    if "actor.mu.weight" in state and "actor.log_std.weight" in state:
        return "sac"
    if "actor.mu.weight" in state and "actor.log_std" in state:
        raise ValueError("a SAC policy with gSDE (use_sde=True) is not mapped; the plain SAC actor is")
    if "actor.mu.0.weight" in state:
        return "td3"
    if "action_net.weight" in state:
        if "log_std" in state:
            raise ValueError(
                "a PPO/A2C policy over Box actions samples an unsquashed Gaussian that the env clips, not imitaudit's "
                "squashed one, so it is not mapped (SAC and TD3 actors are)"
            )
        return "actor-critic"
    return "dqn" if any(k.startswith("q_net.q_net.") for k in state) else "unknown"


def box_actor(state: dict[str, torch.Tensor], kind: str, *, activation: str, dims: int) -> nn.Module:
    """The acting network (obs -> [B, 2 * dims] Gaussian parameters) of a SAC or TD3 state dict.

    Raises:
        ValueError: one line: an action layer that is not ``dims`` wide, or a layout that does not fit.
    """
    act = ACTIVATIONS[activation]
    if kind == "sac":
        mu, log_std = state["actor.mu.weight"], state["actor.log_std.weight"]
        if mu.shape[:1] != (dims,) or log_std.shape[:1] != (dims,):
            raise ValueError(f"the SAC actor acts in {mu.shape[0]} dimension(s), the env's Box in {dims}")
        latent = _layers(state, "actor.latent_pi")
        return _SquashedGaussian(
            latent=_mlp(latent, act, last=True),
            mu=_mlp([(mu, state["actor.mu.bias"])], act),
            log_std=_mlp([(log_std, state["actor.log_std.bias"])], act),
        )
    layers = _layers(state, "actor.mu")
    if layers[-1][0].shape[:1] != (dims,):
        raise ValueError(f"the TD3 actor acts in {layers[-1][0].shape[0]} dimension(s), the env's Box in {dims}")
    from models.actions import LOG_STD_RANGE

    return _Deterministic(body=_mlp(layers, act), log_std=LOG_STD_RANGE[0])


def actor(state: dict[str, torch.Tensor], *, activation: str, name: str = "policy") -> tuple[nn.Sequential, str]:
    """The acting network (obs -> logits) of an SB3 state dict and which kind it is (``actor-critic`` or ``dqn``).

    Raises:
        ValueError: a layout that is not an MLP actor-critic or DQN policy (one line naming what is missing).
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
    if "action_net.weight" in state:
        if any(k.startswith("mlp_extractor.shared_net") for k in state):
            raise ValueError(
                f"{name}: a shared actor-critic trunk (old SB3 net_arch) is not mapped; retrain with "
                f"net_arch=dict(pi=..., vf=...)"
            )
        if any(k.startswith(("features_extractor.cnn", "pi_features_extractor.cnn")) for k in state):
            raise ValueError(f"{name}: CNN feature extractors are not mapped (MLP policies only)")
        hidden = _layers(state, "mlp_extractor.policy_net")
        return _mlp(
            [*hidden, (state["action_net.weight"], state["action_net.bias"])], ACTIVATIONS[activation]
        ), "actor-critic"
    q = _layers(state, "q_net.q_net")
    if q:
        return _mlp(q, ACTIVATIONS[activation]), "dqn"
    keys = ", ".join(sorted(state)[:5])
    raise ValueError(f"{name}: no action_net.weight (actor-critic) or q_net.q_net.* (DQN) tensors; found {keys}")


def _activation_of(data: dict[str, Any], given: str, kind: str) -> str:
    """The activation: ``given``, else the zip's ``policy_kwargs``, else SB3's default for ``kind``."""
    if given:
        return given
    described = _plain(data, "policy_kwargs", "activation_fn")
    if isinstance(described, str):
        for key in ACTIVATIONS:
            if f".{key}'" in described.lower() or described.lower().endswith(key):
                return key
        raise ValueError(f"the policy's activation {described[:80]!r} is not mapped (tanh and relu are)")
    return "tanh" if kind == "actor-critic" else "relu"


def convert_sb3(
    source: str | os.PathLike,
    out: str | os.PathLike,
    *,
    env_id: str,
    env_kwargs: dict[str, Any] | None = None,
    net_arch: str = "",
    activation: str = "",
    action_box: dict[str, Any] | None = None,
) -> Path:
    """Write the SB3 policy at ``source`` (a model.save zip, or a policy state dict) as an ONNX imitator at ``out``.

    ``net_arch`` ("64,64"), when given, is checked against the widths the weights hold. ``action_box``
    (``{"dims", "low", "high"}``, :func:`models.onnx_export.stamp`) is the env's ``Box``, None for a discrete env.

    Raises:
        ValueError: one line naming what could not be read or mapped.
    """
    source, out = Path(source), Path(out)
    if out.suffix != ".onnx":
        raise ValueError(f"--from sb3 writes an ONNX imitator: give an --out ending in .onnx, not {out.name!r}")
    if _is_sb3_archive(source):
        state, data = _read_zip(source)
    else:
        state, data = _weights(source.read_bytes(), str(source)), {}
    try:
        kind = kind_of(state)
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}") from None
    if kind in ("sac", "td3"):
        return _convert_box(state, data, source, out, kind=kind, env_id=env_id, env_kwargs=env_kwargs,
                            net_arch=net_arch, activation=activation, action_box=action_box)  # fmt: skip
    if action_box is not None:
        raise ValueError(f"{source}: {env_id} has Box actions; a discrete policy does not act in it")
    module_name = _plain(data, "policy_class", "__module__")
    kind_hint = "dqn" if isinstance(module_name, str) and ".dqn." in module_name else "actor-critic"
    act = _activation_of(data, activation, kind_hint)
    net, _ = actor(state, activation=act, name=str(source))
    widths = [m.out_features for m in net if isinstance(m, nn.Linear)][:-1]
    if net_arch:
        want = [int(w) for w in net_arch.split(",") if w.strip()]
        if want != widths:
            raise ValueError(f"{source}: --net-arch {net_arch} does not match the weights' hidden widths {widths}")
    obs_dim = next(m for m in net if isinstance(m, nn.Linear)).in_features
    return export_module(net, out, obs_shape=(obs_dim,), env_id=env_id, env_kwargs=env_kwargs)


def _convert_box(
    state: dict[str, torch.Tensor],
    data: dict[str, Any],
    source: Path,
    out: Path,
    *,
    kind: str,
    env_id: str,
    env_kwargs: dict[str, Any] | None,
    net_arch: str,
    activation: str,
    action_box: dict[str, Any] | None,
) -> Path:
    """:func:`convert_sb3` for a SAC or TD3 actor."""
    if action_box is None:
        raise ValueError(f"{source}: a {kind.upper()} policy acts in a Box env; {env_id} has discrete actions")
    act = _activation_of(data, activation, kind)
    try:
        net = box_actor(state, kind, activation=act, dims=int(action_box["dims"]))
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}") from None
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    widths = [m.out_features for m in linears][: -2 if kind == "sac" else -1]
    if net_arch and [int(w) for w in net_arch.split(",") if w.strip()] != widths:
        raise ValueError(f"{source}: --net-arch {net_arch} does not match the weights' hidden widths {widths}")
    return export_module(
        net, out, obs_shape=(linears[0].in_features,), env_id=env_id, env_kwargs=env_kwargs, action_box=action_box
    )
