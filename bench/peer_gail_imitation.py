"""The peer side of bench/peer_gail.py: the `imitation` library's GAIL (1.0.1) on shared CartPole-v1 demonstrations.

Runs inside the peer's own venv (gymnasium 0.29, stable-baselines3 2.2), never imports imitaudit.
Follows the library's documented GAIL example (PPO learner, BasicRewardNet with RunningNorm).
Trains in rounds; after each round the learner is evaluated on 50 episodes (evaluation time
is not counted as training time). Prints one JSON line per round and a final JSON line.

    python peer_gail_imitation.py DEMOS.npz --budget-seconds 240 --target 475 --seed 0
"""

import argparse
import json
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("demos")
    parser.add_argument("--budget-seconds", type=float, default=240.0)
    parser.add_argument("--target", type=float, default=475.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--round-steps", type=int, default=16_384)
    parser.add_argument("--eval-episodes", type=int, default=50)
    parser.add_argument("--demo-batch-size", type=int, default=1024)
    args = parser.parse_args()

    from imitation.algorithms.adversarial.gail import GAIL
    from imitation.data import types
    from imitation.data.wrappers import RolloutInfoWrapper
    from imitation.rewards.reward_nets import BasicRewardNet
    from imitation.util.networks import RunningNorm
    from imitation.util.util import make_vec_env
    from stable_baselines3 import PPO
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.ppo import MlpPolicy

    data = np.load(args.demos, allow_pickle=False)
    obs, acts, episode = data["obs"], data["actions"], data["episode"]
    terminated = data["terminated"] if "terminated" in data else np.ones(len(np.unique(episode)), dtype=bool)
    trajectories = []
    for i, e in enumerate(np.unique(episode)):
        rows = np.flatnonzero(episode == e)
        ep_obs = obs[rows]
        # imitation wants T+1 observations; the final one is not recorded, so repeat the last
        # (BasicRewardNet below reads state and action only, never the next state).
        trajectories.append(
            types.Trajectory(
                obs=np.concatenate([ep_obs, ep_obs[-1:]]), acts=acts[rows], infos=None, terminal=bool(terminated[i])
            )
        )

    rng = np.random.default_rng(args.seed)
    env = make_vec_env("CartPole-v1", rng=rng, n_envs=8, post_wrappers=[lambda env, _: RolloutInfoWrapper(env)])
    learner = PPO(
        env=env,
        policy=MlpPolicy,
        batch_size=64,
        ent_coef=0.0,
        learning_rate=0.0004,
        gamma=0.95,
        n_epochs=5,
        seed=args.seed,
    )
    reward_net = BasicRewardNet(
        observation_space=env.observation_space, action_space=env.action_space, normalize_input_layer=RunningNorm
    )
    trainer = GAIL(
        demonstrations=trajectories,
        demo_batch_size=args.demo_batch_size,
        gen_replay_buffer_capacity=512,
        n_disc_updates_per_round=8,
        venv=env,
        gen_algo=learner,
        reward_net=reward_net,
        allow_variable_horizon=True,
    )
    eval_env = make_vec_env("CartPole-v1", rng=np.random.default_rng(args.seed + 1), n_envs=1)
    train_seconds, steps, best = 0.0, 0, -1.0
    reached = False
    while train_seconds < args.budget_seconds:
        start = time.perf_counter()
        trainer.train(args.round_steps)
        train_seconds += time.perf_counter() - start
        steps += args.round_steps
        mean, _ = evaluate_policy(learner, eval_env, args.eval_episodes, deterministic=True)
        best = max(best, float(mean))
        print(
            json.dumps({"round": True, "train_seconds": train_seconds, "env_steps": steps, "mean_return": float(mean)}),
            flush=True,
        )
        if mean >= args.target:
            reached = True
            break
    print(
        json.dumps(
            {
                "final": True,
                "reached": reached,
                "train_seconds": train_seconds,
                "env_steps": steps,
                "last_return": float(mean),
                "best_return": best,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
