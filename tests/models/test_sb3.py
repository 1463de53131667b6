"""Stable-Baselines3 policies (PPO, DQN, an imitation-style BC ActorCriticPolicy) converted without unpickling, acting
as before."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import stable_baselines3 as sb3
import torch

from models.load import load_imitator
from models.sb3 import convert_sb3

BIN = str(Path(sys.executable).with_name("imitaudit"))
OBS = torch.randn(128, 4, generator=torch.Generator().manual_seed(0))


def _same_policy(model, path):
    imitator, info = load_imitator(path)
    assert info.arch == "onnx" and info.env_id == "CartPole-v1"
    logits, _ = imitator(OBS)
    greedy, _ = model.predict(OBS.numpy(), deterministic=True)
    assert (logits.argmax(-1).numpy() == greedy).all()
    return imitator, logits


@pytest.mark.parametrize(
    "algo,kwargs",
    [
        ("PPO", {"n_steps": 64, "batch_size": 32, "n_epochs": 2}),
        (
            "PPO",
            {
                "n_steps": 64,
                "batch_size": 32,
                "n_epochs": 2,
                "policy_kwargs": {"activation_fn": torch.nn.ReLU, "net_arch": [32, 16]},
            },
        ),
        ("DQN", {"learning_starts": 10}),
    ],
    ids=["ppo-default", "ppo-relu", "dqn"],
)
def test_an_sb3_zip_converts_to_the_same_policy(algo, kwargs, tmp_path):
    model = getattr(sb3, algo)("MlpPolicy", "CartPole-v1", seed=0, device="cpu", **kwargs)
    model.learn(128)  # a tiny budget: what is checked is the conversion, not the policy
    model.save(tmp_path / "model.zip")
    imitator, logits = _same_policy(
        model, convert_sb3(tmp_path / "model.zip", tmp_path / "imitator.onnx", env_id="CartPole-v1")
    )
    if algo == "PPO":  # the distribution itself, not only its argmax
        dist = model.policy.get_distribution(OBS).distribution
        assert torch.allclose(torch.log_softmax(logits, -1), dist.logits, atol=1e-5)


@pytest.mark.slow  # a CLI subprocess
def test_an_imitation_style_bc_policy_converts_from_its_state_dict(tmp_path):
    from gymnasium import spaces
    from stable_baselines3.common.policies import ActorCriticPolicy

    policy = ActorCriticPolicy(
        spaces.Box(-np.inf, np.inf, (4,)), spaces.Discrete(2), lr_schedule=lambda _: 1e-3, net_arch=[32, 32]
    )
    obs = torch.randn(256, 4)
    actions = (
        obs[:, 2] > 0
    ).long()  # behavioural cloning of a balancing rule, as imitation's BC does: maximise log-likelihood
    for _ in range(50):
        _, log_prob, _ = policy.evaluate_actions(obs, actions)
        policy.optimizer.zero_grad()
        (-log_prob.mean()).backward()
        policy.optimizer.step()
    torch.save(policy.state_dict(), tmp_path / "bc.pth")
    out = convert_sb3(tmp_path / "bc.pth", tmp_path / "bc.onnx", env_id="CartPole-v1", net_arch="32,32")
    imitator, _ = load_imitator(out)
    logits, _ = imitator(OBS)
    assert torch.allclose(torch.log_softmax(logits, -1), policy.get_distribution(OBS).distribution.logits, atol=1e-5)
    with pytest.raises(ValueError, match=r"--net-arch 64,64 does not match the weights' hidden widths \[32, 32\]"):
        convert_sb3(tmp_path / "bc.pth", tmp_path / "x.onnx", env_id="CartPole-v1", net_arch="64,64")
    # policy.save pickles classes: refused in one line, without terminal colour codes, with what to do instead
    policy.save(tmp_path / "pickled.pth")
    res = subprocess.run(
        [
            BIN,
            "convert",
            "--from",
            "sb3",
            str(tmp_path / "pickled.pth"),
            "--env",
            "CartPole-v1",
            "--out",
            str(tmp_path / "p.onnx"),
        ],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2 and "torch.save(policy.state_dict()" in res.stderr, res.stderr
    assert (
        "Traceback" not in res.stderr
        and not re.search(r"\x1b\[", res.stderr)
        and len(res.stderr.strip().splitlines()) == 1
    )
    assert not (tmp_path / "p.onnx").exists()


@pytest.mark.slow
def test_the_cli_converts_an_sb3_zip_and_refuses_what_it_cannot_map(tmp_path):
    model = sb3.PPO("MlpPolicy", "CartPole-v1", seed=0, device="cpu", n_steps=64, batch_size=32, n_epochs=1)
    model.learn(64)
    model.save(tmp_path / "ppo.zip")
    ok = subprocess.run(
        [
            BIN,
            "convert",
            "--from",
            "sb3",
            str(tmp_path / "ppo.zip"),
            "--env",
            "CartPole-v1",
            "--out",
            str(tmp_path / "ppo.onnx"),
        ],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    _same_policy(model, tmp_path / "ppo.onnx")
    (tmp_path / "not.zip").write_bytes(b"PK\x03\x04 not really")
    for args in (
        ["--from", "sb3", str(tmp_path / "ppo.zip"), "--out", str(tmp_path / "x.onnx")],  # no --env
        ["--from", "sb3", str(tmp_path / "not.zip"), "--env", "CartPole-v1", "--out", str(tmp_path / "x.onnx")],
        ["--from", "sb3", str(tmp_path / "ppo.zip"), "--env", "CartPole-v1", "--out", str(tmp_path / "x.safetensors")],
        # a CartPole policy named for MountainCar (2 obs features, 3 actions): refused now, no file left
        ["--from", "sb3", str(tmp_path / "ppo.zip"), "--env", "MountainCar-v0", "--out", str(tmp_path / "x.onnx")],
    ):
        bad = subprocess.run([BIN, "convert", *args], capture_output=True, text=True)
        assert bad.returncode == 2 and "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1, (
            bad.stderr
        )
        assert not (tmp_path / "x.onnx").exists()


PENDULUM_BOX = {"dims": 1, "low": [-2.0], "high": [2.0]}
PENDULUM_OBS = torch.randn(128, 3, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("algo", ["SAC", "TD3"])
def test_a_sac_or_td3_actor_converts_to_the_same_squashed_policy(algo, tmp_path):
    from models.actions import distribution_of

    kwargs = {"policy_kwargs": {"net_arch": [32, 16]}, "learning_starts": 32, "batch_size": 16}
    model = getattr(sb3, algo)("MlpPolicy", "Pendulum-v1", seed=0, device="cpu", **kwargs)
    model.learn(64)
    model.save(tmp_path / "model.zip")
    path = convert_sb3(tmp_path / "model.zip", tmp_path / "i.onnx", env_id="Pendulum-v1", action_box=PENDULUM_BOX)
    imitator, info = load_imitator(path)
    assert imitator.config.continuous and imitator.config.action_high == (2.0,) and info.n_actions == 1
    params, _ = imitator(PENDULUM_OBS)
    dist = distribution_of(imitator.config)
    greedy, _ = model.predict(PENDULUM_OBS.numpy(), deterministic=True)
    np.testing.assert_allclose(dist.mode(params).numpy(), greedy, atol=1e-5)
    if algo == "SAC":  # the spread as well: SAC's own Gaussian, before its squash
        mean, log_std, _ = model.actor.get_action_dist_params(PENDULUM_OBS)
        np.testing.assert_allclose(params[:, :1].detach().numpy(), mean.detach().numpy(), atol=1e-5)
        np.testing.assert_allclose(params[:, 1:].detach().numpy(), log_std.detach().numpy(), atol=1e-5)


def test_box_policies_that_are_not_mapped_are_refused_in_one_line(tmp_path):
    ppo = sb3.PPO("MlpPolicy", "Pendulum-v1", seed=0, device="cpu", n_steps=64, batch_size=32)
    ppo.save(tmp_path / "ppo.zip")
    with pytest.raises(ValueError, match="unsquashed Gaussian"):
        convert_sb3(tmp_path / "ppo.zip", tmp_path / "p.onnx", env_id="Pendulum-v1", action_box=PENDULUM_BOX)
    sac = sb3.SAC("MlpPolicy", "Pendulum-v1", seed=0, device="cpu", policy_kwargs={"net_arch": [8]})
    sac.save(tmp_path / "sac.zip")
    with pytest.raises(ValueError, match="acts in a Box env; CartPole-v1 has discrete actions"):
        convert_sb3(tmp_path / "sac.zip", tmp_path / "s.onnx", env_id="CartPole-v1")
    with pytest.raises(ValueError, match="acts in 1 dimension"):
        convert_sb3(
            tmp_path / "sac.zip", tmp_path / "s.onnx", env_id="X", action_box={"dims": 2, "low": None, "high": None}
        )
    dqn = sb3.DQN("MlpPolicy", "CartPole-v1", seed=0, device="cpu")
    dqn.save(tmp_path / "dqn.zip")
    with pytest.raises(ValueError, match="has Box actions; a discrete policy"):
        convert_sb3(tmp_path / "dqn.zip", tmp_path / "d.onnx", env_id="Pendulum-v1", action_box=PENDULUM_BOX)
    assert not any(tmp_path.glob("*.onnx"))
