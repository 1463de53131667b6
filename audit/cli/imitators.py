"""``imitaudit train``, ``evaluate``, ``convert``: making and reading imitators."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from audit.cli.common import EXIT_OK, UsageError, env_kwargs_arg, positive_int

FEW_EPISODES = 100
"""Below this many demonstration episodes, ``train`` says that the imitator will be poor (it still trains)."""


def cmd_train(args: argparse.Namespace) -> int:
    from audit.data.demonstrations import Demonstrations
    from audit.options import from_arguments
    from audit.training.config import TrainConfig
    from audit.training.run import file_sha256, train

    demos = Demonstrations.load(args.demos)
    cfg = from_arguments(TrainConfig, args)
    if demos.n_episodes < FEW_EPISODES:
        print(
            f"imitaudit: training on {demos.n_episodes} demonstration episode(s): expect a poor imitator (the tour "
            "uses 1,000; `imitaudit evaluate --demos` says how close it gets)",
            file=sys.stderr,
            flush=True,
        )
    result = train(demos, cfg, out=args.out, resume=args.resume, demos_sha256=file_sha256(args.demos))
    figures = ", ".join(f"{k} {v:.3f}" for k, v in sorted(result.metrics.items()))
    print(f"wrote {result.path} ({cfg.arch}, {cfg.mode}); logs in {result.run_dir}; {figures}")
    return EXIT_OK


def cmd_evaluate(args: argparse.Namespace) -> int:
    from audit.data.demonstrations import Demonstrations
    from audit.detect.inputs import imitator_fits_env
    from audit.training.evaluate import evaluate
    from models.load import load_imitator

    model, info = load_imitator(args.imitator)
    env_kwargs = info.env_kwargs if args.env_kwargs is None else args.env_kwargs
    imitator_fits_env(info, env_kwargs)
    demos = None
    if args.demos:
        demos = Demonstrations.load(args.demos)
        if demos.env_id != info.env_id:
            raise ValueError(f"demonstrations are of {demos.env_id}, the imitator of {info.env_id}")
    result = evaluate(model, info.env_id, episodes=args.episodes, seed=args.seed, env_kwargs=env_kwargs, demos=demos)
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
        return EXIT_OK
    rate = (
        "n/a"
        if result["departure_rate"] is None
        else f"{result['departure_rate']:.4f} +- {result['departure_rate_se']:.4f}"
    )
    print(f"{info.env_id} {info.arch}: {result['episodes']} episodes")
    print(f"  mean return    {result['mean_return']:.4f} +- {result['mean_return_se']:.4f}")
    print(f"  departure rate {rate}")
    print(f"  mean length    {result['mean_length']:.2f}")
    if demos is not None:
        d = result["demos"]
        drate = "n/a" if d["departure_rate"] is None else f"{d['departure_rate']:.4f}"
        print(f"  demonstrations: return {d['mean_return']:.4f}, departure rate {drate}, length {d['mean_length']:.2f}")
        if "return_ratio" in result:
            sign = "; the returns are negative: below 1 the imitator did better" if d["mean_return"] < 0 else ""
            print(f"  return ratio   {result['return_ratio']:.3f} (imitator over demonstrations{sign})")
    return EXIT_OK


def _tap_map(spec: str) -> dict[str, str]:
    pairs = [p.split("=", 1) for p in spec.split(",") if p]
    if any(len(p) != 2 or not p[0] or not p[1] for p in pairs):
        raise UsageError(f"--taps must be TAP=TENSOR pairs separated by commas, got {spec!r}")
    return dict(pairs)


def cmd_convert(args: argparse.Namespace) -> int:
    from models.convert import convert

    kind = args.source_format or ("lightning" if args.ckpt else "")
    source = args.source or args.ckpt
    if not kind or not source:
        raise UsageError("name what to convert: --from lightning|imitaudit|onnx|sb3 SOURCE (or --ckpt FILE)")
    if not Path(source).is_file():
        raise UsageError(f"{source}: no such file")
    out = convert(
        kind,
        source,
        args.out,
        env_id=args.env,
        env_kwargs=args.env_kwargs or {},
        taps=_tap_map(args.taps),
        state_inputs=tuple(filter(None, args.state_inputs.split(","))),
        state_outputs=tuple(filter(None, args.state_outputs.split(","))),
        logits=args.logits,
        net_arch=args.net_arch,
        activation=args.activation,
        action_box=_action_box(kind, args.env, args.env_kwargs or {}),
    )
    _check_fits(Path(out))
    print(f"wrote {out}")
    return EXIT_OK


def _action_box(kind: str, env_id: str, env_kwargs: dict) -> dict | None:
    """The ``Box`` a converted ONNX or SB3 policy acts in (its env's), None for a discrete env or another kind."""
    if kind not in ("onnx", "sb3") or not env_id:
        return None
    from audit.envs.adapter import env_signature
    from models.imitator import ImitatorConfig
    from models.onnx_export import action_box_of

    space = env_signature(env_id, env_kwargs)[1]
    if not space.continuous:
        return None
    return action_box_of(
        ImitatorConfig(obs_dim=1, n_actions=space.n, continuous=True, action_low=space.low, action_high=space.high)
    )


def _check_fits(path: Path) -> None:
    """Refuse, and remove, a converted imitator that does not fit the env it names (a CartPole policy converted with
    --env MountainCar-v0): said here, not first by the audit.

    Raises:
        ValueError: one line naming what does not fit.
    """
    from audit.detect.inputs import imitator_fits_env
    from models.load import load_imitator

    try:
        imitator_fits_env(load_imitator(str(path))[1])
    except ValueError:
        path.unlink(missing_ok=True)
        raise


def imitator_commands(sub: argparse._SubParsersAction) -> None:
    """train, evaluate, convert: making and measuring imitators."""
    _train_parser(sub)
    _evaluate_parser(sub)
    _convert_parser(sub)


def _train_parser(sub: argparse._SubParsersAction) -> None:
    """``imitaudit train``: its options are TrainConfig's fields."""
    from audit.options import add_arguments
    from audit.training.config import TrainConfig

    p = sub.add_parser(
        "train",
        help="train an imitator (bc or adversarial) on demonstrations",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  imitaudit train --demos demos.safetensors --out imitator.safetensors                    "
        " # BC, 500 steps\n"
        "  imitaudit train --demos demos.safetensors --mode adversarial --out imitator.safetensors  # 300 BC + 200 "
        "iterations",
    )
    p.add_argument("--demos", required=True, help="demonstrations .safetensors")
    p.add_argument("--out", required=True, help="output imitator .safetensors")
    p.add_argument("--resume", action="store_true", help="continue the run folder's last checkpoint")
    add_arguments(p, TrainConfig)
    p.set_defaults(func=cmd_train)


def _evaluate_parser(sub: argparse._SubParsersAction) -> None:
    """``imitaudit evaluate``."""
    p = sub.add_parser("evaluate", help="roll an imitator out: return, departure rate, length")
    p.add_argument(
        "--imitator", required=True, help="imitator checkpoint: .safetensors, or .onnx (see docs/interop.md)"
    )
    p.add_argument("--episodes", type=positive_int, default=500, help="episodes to roll out (default: 500)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first episode (default: 0)")
    p.add_argument("--demos", default="", help="demonstrations to compare against (return ratio)")
    p.add_argument(
        "--env-kwargs", type=env_kwargs_arg, default=None, help="JSON object overriding the checkpoint's env kwargs"
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_evaluate)


def _convert_parser(sub: argparse._SubParsersAction) -> None:
    """``imitaudit convert``."""
    p = sub.add_parser(
        "convert",
        help="make an imitator imitaudit can audit: from a training run, an SB3 policy, or an ONNX graph",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  imitaudit convert --from lightning runs/<run>/adversarial/checkpoints/last.ckpt --out "
        "imitator.safetensors\n"
        "  imitaudit convert --from imitaudit imitator.safetensors --out imitator.onnx\n"
        "  imitaudit convert --from onnx my_policy.onnx --env CartPole-v1 --out imitator.onnx\n"
        "  imitaudit convert --from sb3 ppo_cartpole.zip --env CartPole-v1 --out imitator.onnx",
    )
    p.add_argument(
        "--from",
        dest="source_format",
        default="",
        choices=("lightning", "imitaudit", "onnx", "sb3"),
        help="what SOURCE is: a Lightning .ckpt of an imitaudit run, an imitaudit .safetensors imitator, an ONNX "
        "policy exported elsewhere (obs [B, ...] -> logits [B, A]), or a Stable-Baselines3 .zip (read without "
        "unpickling)",
    )
    p.add_argument("source", nargs="?", default="", help="the file to convert")
    p.add_argument("--ckpt", default="", help="same as --from lightning CKPT (read weights-only)")
    p.add_argument(
        "--out", required=True, help="output: .safetensors (registry imitator) or .onnx (run by onnxruntime)"
    )
    p.add_argument("--env", default="", help="env id the policy acts in (--from onnx and sb3)")
    p.add_argument(
        "--env-kwargs",
        type=env_kwargs_arg,
        default=None,
        help="JSON object of env keyword arguments (--from onnx and sb3)",
    )
    p.add_argument(
        "--taps",
        default="",
        metavar="TAP=TENSOR,...",
        help="--from onnx: graph tensors to read as taps, e.g. core=/pi/h2 (default: the inputs of the last two "
        "MatMul/Gemm nodes, and the logits as head)",
    )
    p.add_argument(
        "--state-inputs",
        default="",
        metavar="A,B",
        help="--from onnx: recurrent state inputs, paired in order with --state-outputs",
    )
    p.add_argument("--state-outputs", default="", metavar="A,B", help="--from onnx: the next-state outputs")
    p.add_argument(
        "--logits",
        default="",
        metavar="TENSOR",
        help="--from onnx: the logits output (default: the graph's first output)",
    )
    p.add_argument(
        "--net-arch",
        default="",
        metavar="64,64",
        help="--from sb3: the policy network's hidden widths when the zip does not say them in plain JSON",
    )
    p.add_argument(
        "--activation",
        default="",
        choices=("", "tanh", "relu"),
        help="--from sb3: the hidden activation when the zip does not say it in plain JSON (SB3's default: tanh)",
    )
    p.set_defaults(func=cmd_convert)
