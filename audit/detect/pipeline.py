"""The audit, stage by stage in the order of the flow: load, rollout, reference, search, discriminate, calibrate,
explain, report.

``run_audit(config) -> dict`` (an AuditReport, see :mod:`audit.report.schema`), one call per stage:

1. load: the checkpoint (through the registry, never unpickled) and the demonstrations;
   both of the same env, the imitator fitting its observations (:mod:`audit.detect.inputs`).
   Demonstration episodes split (seeded) into ``fit`` and held-out ``calibration``.
2. rollout: ``episodes`` trajectories of the imitator (episode e seeded ``seed + e``),
   capturing activations at every tap the detector may read.
3. reference: the imitator teacher-forced over the demonstration episodes, for the
   demonstrator's activations (and over its own trajectories for its policy entropy).
4. search (``config.search`` > 0): the active audit (:mod:`audit.detect.search`).
5. discriminate: K fresh cross-fitted detectors (:mod:`audit.detect.detectors`).
6. calibrate: trajectory scores, conformal p-values, flags (:mod:`audit.detect.calibrate`),
   and a severity (:mod:`audit.detect.severity`).
7. explain: Integrated Gradients for the most significant flags (:mod:`audit.detect.explain`).
8. report: records, summary, verdict (:mod:`audit.report.build`).

Ground-truth departure events, where the env records them, go into the report and are
never part of any detector's input.
"""

from __future__ import annotations

import copy
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from audit.data.batching import pad_episodes
from audit.data.demonstrations import Demonstrations
from audit.data.rollout import LOGITS, Trajectories, concat, rollout, rollout_shard, shards
from audit.data.seeds import derive_seed
from audit.detect.calibrate import Calibration, Combined, calibrate, combine
from audit.detect.collective import certify, collective_test, detectable_share
from audit.detect.config import AuditConfig
from audit.detect.detectors import CrossFit, Detector, Episodes, cross_fit
from audit.detect.inputs import check_null_preconditions, check_pair, split_demonstrations
from audit.detect.monitor import Monitor
from audit.detect.registry import REGISTRY, detector_class
from audit.detect.search import Asked, demonstrator_to_ask, fit_reference, search_report
from audit.detect.severity import policy_entropy, severities
from audit.envs import world_of
from audit.envs.features import observation_names, vector_frame
from audit.report.build import assemble, summarize, trajectory_records
from models.actions import distribution_of, plain
from models.load import load_imitator
from models.taps import teacher_forced

Progress = Callable[[str, float], None]
"""Called with (stage, fraction of the whole audit done)."""

STAGES = ("load", "rollout", "reference", "search", "discriminate", "calibrate", "explain", "report")
_WEIGHTS = {
    "load": 0.05,
    "rollout": 0.15,
    "reference": 0.1,
    "search": 0.1,
    "discriminate": 0.4,
    "calibrate": 0.05,
    "explain": 0.1,
    "report": 0.05,
}


class StageClock:
    """Times the stages, reports progress, and stops the audit between stages when asked to."""

    def __init__(self, *, progress: Progress | None, should_stop: Callable[[], bool] | None) -> None:
        self.progress, self.should_stop = progress, should_stop
        self.timings: dict[str, float] = {}
        self.start = self.last = self.polled = time.perf_counter()

    def within(self, stage: str, fraction: float) -> None:
        """Progress part-way through ``stage``; also where a stop request is noticed inside a stage (at most every
        second).

        Raises:
            InterruptedError: ``should_stop`` said so.
        """
        if self.progress:
            self.progress(stage, sum(_WEIGHTS[s] for s in STAGES[: STAGES.index(stage)]) + _WEIGHTS[stage] * fraction)
        now = time.perf_counter()
        if self.should_stop and fraction < 1.0 and now - self.polled >= 1.0:
            self.polled = now
            if self.should_stop():
                raise InterruptedError(f"audit stopped during stage {stage}")

    def done(self, stage: str) -> None:
        """``stage`` finished.

        Raises:
            InterruptedError: ``should_stop`` said so.
        """
        now = time.perf_counter()
        self.timings[stage] = round(now - self.last, 4)
        self.last = now
        self.within(stage, 1.0)
        if self.should_stop and self.should_stop():
            raise InterruptedError(f"audit stopped after stage {stage}")


@dataclass(frozen=True, kw_only=True)
class Inputs:
    """The loaded imitator and demonstrations, with the demonstrations' split."""

    model: Any
    info: Any
    demos: Demonstrations
    demos_sha256: str
    fit_episodes: np.ndarray
    calibration_episodes: np.ndarray
    taps: tuple[str, ...]
    """The taps read: the configured ones, or, for the default, those of them the imitator has (an ONNX policy of one
    hidden layer has no ``encoder``)."""
    asked: Asked | None = None
    """Whom the active audit asks on the layouts it finds (None: nobody, or no search)."""


def load(config: AuditConfig) -> Inputs:
    """Stage 1: load and check both files; split the demonstrations.

    Raises:
        ValueError: inputs that cannot be audited (one line).
    """
    model, info = load_imitator(config.imitator)
    demos = Demonstrations.load(config.demos)
    taps = config.taps
    if taps == next(f.default for f in fields(AuditConfig) if f.name == "taps"):
        taps = tuple(t for t in taps if t in model.taps)
    check_pair(model, info, demos, taps)
    kinds = len(detector_class(config.detector).kinds) or 1  # each kind is calibrated at alpha / kinds
    try:
        fit, cal = split_demonstrations(
            demos.n_episodes,
            calibration_fraction=config.calibration_fraction,
            alpha=config.alpha / kinds,
            seed=config.seed,
            max_fit=config.max_fit_episodes,
            max_calibration=config.max_calibration_episodes,
        )
    except ValueError as exc:
        if kinds == 1:
            raise
        raise ValueError(
            f"the combined detector calibrates each of its {kinds} evidence kinds at alpha/{kinds}: {exc}"
        ) from None
    sha = hashlib.sha256(Path(config.demos).read_bytes()).hexdigest()
    check_null_preconditions(
        {"provenance": info.provenance, "env_kwargs": info.env_kwargs},
        {"env_kwargs": demos.env_kwargs},
        sha,
        allow_training_demos=config.allow_training_demos,
    )
    asked = None
    if config.search:
        named = load_imitator(config.demonstrator) if config.demonstrator else None
        asked = demonstrator_to_ask(info.env_id, demos.source, named, Path(config.demonstrator).name)
    return Inputs(
        model=model,
        info=info,
        demos=demos,
        demos_sha256=sha,
        fit_episodes=fit,
        calibration_episodes=cal,
        taps=taps,
        asked=asked,
    )


def read_taps(config: AuditConfig) -> tuple[str, ...]:
    """The taps the detector reads: the configured ones, ``core`` for Mahalanobis, ``head`` for intent."""
    return detector_class(config.detector).reads_taps(config)


@dataclass(frozen=True, kw_only=True)
class Reference:
    """Stage 3's output: the three sets of episodes detectors see, and the imitator's entropy on its own trajectories.

    Attributes:
        fit: demonstration episodes detectors learn the demonstrator from.
        cal: held-out demonstration episodes, scored for calibration only.
        test: the audited trajectories.
        entropy: [E, T] the imitator's policy entropy at each audited step.
    """

    fit: Episodes
    cal: Episodes
    test: Episodes
    entropy: Tensor


def rolled_out(
    config: AuditConfig,
    inputs: Inputs,
    clock: StageClock,
    cluster: Any | None,
    *,
    screen: bool = False,
) -> Trajectories:
    """Stage 2: the imitator's trajectories, shard by shard (:func:`audit.data.rollout.rollout_shard`); each shard a
    task on a cluster. With ``screen``, the search's screening episodes instead: ``config.search`` of them, seeded apart
    from the audited ones, with the logits the imitator acted on (the screen's divergence reads them)."""
    stage = "search" if screen else "rollout"
    job = dict(
        env_id=inputs.info.env_id,
        seed=derive_seed(config.seed, "search-screen") if screen else config.seed,
        env_kwargs=inputs.info.env_kwargs,
        taps=(LOGITS,) if screen else read_taps(config),
        greedy=config.actions == "greedy",
        departure_key=config.departure_key or inputs.demos.departure_key,
    )
    spans = shards(config.search if screen else config.episodes, config.shard_episodes)
    if cluster is not None:
        return concat(
            cluster.map(
                rollout_shard,
                spans,
                common=(inputs.model, job),
                progress=lambda f: clock.within(stage, f),
                kind="screening shards" if screen else "rollout shards",
            )
        )
    parts = []
    for k, span in enumerate(spans):  # an episode's length is not known ahead: a fraction that grows within each shard
        parts.append(
            rollout_shard(
                inputs.model, job, span, on_step=lambda t: clock.within(stage, (k + t / (t + 50.0)) / len(spans))
            )
        )
    return concat(parts)


def reference(config: AuditConfig, inputs: Inputs, traj: Trajectories) -> Reference:
    """Stage 3: the imitator teacher-forced over demonstration episodes (and its own, for entropy)."""
    taps = read_taps(config)
    sets = {}
    with torch.no_grad():
        for name, eps in (("fit", inputs.fit_episodes), ("cal", inputs.calibration_episodes)):
            obs, actions, mask = pad_episodes(inputs.demos.select(eps))
            _, acts = teacher_forced(inputs.model, obs, mask, taps)
            sets[name] = Episodes(obs=obs, actions=actions, mask=mask, taps=acts.taps)
        own_logits, _ = teacher_forced(inputs.model, traj.obs, traj.mask, ())
    test = Episodes(
        obs=traj.obs,
        actions=traj.actions,
        mask=traj.mask,
        taps={t: traj.activations.taps[t] for t in taps},
        seeds=traj.seeds,
    )
    entropy = policy_entropy(distribution_of(inputs.model.config), own_logits, traj.mask)
    return Reference(fit=sets["fit"], cal=sets["cal"], test=test, entropy=entropy)


def levels(config: AuditConfig, inputs: Inputs) -> tuple[float, float]:
    """The gate's level split between the passive audit and the search: half each when the search can confirm what it
    finds (a demonstrator to ask), so that together they fail an exchangeable imitator at most delta of the time."""
    delta = config.policy.delta
    return (delta / 2, delta / 2) if config.search and inputs.asked is not None else (delta, 0.0)


def searched(
    config: AuditConfig, inputs: Inputs, ref: Reference, clock: StageClock, cluster: Any | None
) -> dict | None:
    """Stage 4: the active audit (:mod:`audit.detect.search`), or None when ``config.search`` is 0."""
    if not config.search:
        return None
    screen = rolled_out(config, inputs, clock, cluster, screen=True)
    info = inputs.info
    yardstick = fit_reference(
        ref.fit,
        env_id=info.env_id,
        actions_like=info.config,
        hidden=config.reference_hidden,
        steps=config.reference_steps,
        seed=config.seed,
    )
    return search_report(
        screen=screen,
        reference=yardstick,
        imitator=inputs.model,
        asked=inputs.asked,
        env={
            "id": info.env_id,
            "kwargs": info.env_kwargs,
            "departure_key": config.departure_key or inputs.demos.departure_key,
        },
        keep=config.search_keep,
        repeats=config.search_repeats,
        level=levels(config, inputs)[1],
        seed=config.seed,
        frame=frames(inputs),
    )


def frames(inputs: Inputs) -> Callable[[np.ndarray, Any], str | list[str]]:
    """How a replay draws one step (obs [D], action): the grid for built-in envs, named features and the action for
    others."""
    info = inputs.info
    world_cls = world_of(info.env_id)
    if world_cls is not None:
        renderer = world_cls(num_envs=1, **info.env_kwargs)
        return lambda obs, action: renderer.text_from_obs(obs)
    names = observation_names(info.env_id, info.env_kwargs, info.config.obs_dim, inputs.demos.feature_names)
    return lambda obs, action: vector_frame(obs, action, names, inputs.demos.action_names)


def detector_factory(config: AuditConfig, inputs: Inputs) -> Callable[[], Detector]:
    """A maker of fresh detectors of the configured kind."""
    return detector_class(config.detector).factory(config, inputs)


def check_monitorable(config: AuditConfig) -> None:
    """Refuse a runtime monitor for a detector a monitor cannot carry.

    Raises:
        ValueError: one line naming the detector.
    """
    if not detector_class(config.detector).monitorable:
        monitorable = sorted(name for name, cls in REGISTRY.items() if cls.monitorable)
        raise ValueError(f"a runtime monitor carries {', '.join(monitorable)} step evidence, not {config.detector}")


def check_gate(config: AuditConfig) -> None:
    """Refuse a gate whose level would not be known: a detector whose calibration does not score the demonstrator's
    episodes as it scores the audited ones (its ``exact_null``).

    Raises:
        ValueError: one line naming the detector.
    """
    if not detector_class(config.detector).exact_null:
        raise ValueError(
            f"the gate needs a detector whose null is exact; --detector {config.detector}'s p-values are approximate "
            "(audit with it, gate with discriminator or mahalanobis)"
        )


def calibrated(
    config: AuditConfig, ref: Reference, fitted: CrossFit, delta: float
) -> tuple[Calibration, list[str | None], Combined | None, dict]:
    """Stage 5: scores, p-values, flags, severities (each evidence kind calibrated on its own where there are several),
    and the batch's collective test (see :func:`batch_test`)."""
    kinds = fitted.detectors[0].kinds
    opts: dict[str, Any] = dict(drift_quantile=config.drift_quantile, rule=config.score_rule)
    combined = None
    parts: dict[str, Calibration] = {}
    if not kinds:
        cal = calibrate(
            fitted.test_evidence,
            ref.test.mask,
            fitted.cal_evidence,
            ref.cal.mask,
            fitted.fold,
            alpha=config.alpha,
            bh=config.bh,
            **opts,
        )
        evidence, drift = fitted.test_evidence, cal.drift[fitted.fold]
        certified = certify(cal.pvalue, fitted.fold, delta)
    else:
        parts = {
            n: calibrate(
                fitted.test_evidence[..., i],
                ref.test.mask,
                fitted.cal_evidence[..., i],
                ref.cal.mask,
                fitted.fold,
                alpha=config.alpha / len(kinds),
                **opts,
            )
            for i, n in enumerate(kinds)
        }
        cal, combined = combine(
            parts, fitted.test_evidence, ref.test.mask, fitted.fold, alpha=config.alpha, bh=config.bh
        )
        # the severity rule reads the kind that fired first (the first kind where none did)
        pick = np.array([kinds.index(f) if f else 0 for f in combined.fired_first])
        index = torch.from_numpy(pick)[:, None, None].expand(*ref.test.mask.shape, 1)
        evidence = fitted.test_evidence.gather(2, index).squeeze(2)
        drift = np.array([parts[kinds[k]].drift[f] for k, f in zip(pick, fitted.fold)])
        certified = np.any([certify(parts[n].pvalue, fitted.fold, delta / len(kinds)) for n in kinds], axis=0)
    batch = batch_test(config, fitted, cal, delta, parts=None if fitted.detectors[0].joint_exchangeable else parts)
    # closed testing: a trajectory is certified only inside a rejected global null, so on the null the gate's two checks
    # together fail with probability at most delta (not 2 delta), and each fold's FDR stays at most delta / K
    certified &= batch["collective_pvalue"] <= delta
    batch["certified"] = int((cal.flagged & certified).sum())
    severity = severities(
        cal.flagged & certified,
        evidence,
        ref.test.mask,
        drift,
        ref.entropy,
        sustained_steps=config.sustained_steps,
        confident_entropy=config.confident_entropy,
    )
    severity = [s if s is not None else ("distinguishable" if f else None) for s, f in zip(severity, cal.flagged)]
    return cal, severity, combined, batch


def batch_test(
    config: AuditConfig,
    fitted: CrossFit,
    cal: Calibration,
    delta: float,
    *,
    parts: dict[str, Calibration] | None = None,
) -> dict:
    """The summary's account of the batch: the collective test at delta, its lower bound on how many trajectories are
    unlike the demonstrator's, whether the detector's null is exact, and the audit's power (``certified`` is the
    caller's).

    With ``parts`` (kinds exchangeable one by one, not jointly) each kind is tested at delta / K: the p-value is
    Bonferroni's and the lower bound the largest of the kinds' (simultaneous at 1 - delta).
    """
    k = len(fitted.detectors)
    if parts:
        tests = [
            collective_test(c.score, c.cal_scores, fitted.fold, level=delta / len(parts), seed=config.seed)
            for c in parts.values()
        ]
        pvalue = min(1.0, len(parts) * min(t.pvalue for t in tests))
        bound = max(t.lower_bound for t in tests)
        m = min(c.cal_scores.shape[1] for c in parts.values())
        share_delta = delta / len(parts)
    else:
        found = collective_test(cal.score, cal.cal_scores, fitted.fold, level=delta, seed=config.seed)
        pvalue, bound, m, share_delta = found.pvalue, found.lower_bound, cal.cal_scores.shape[1], delta
    n = len(cal.score)
    share = detectable_share(n, m, k, share_delta, tolerance=config.policy.max_unlike_share)
    return {
        "delta": delta,
        "collective_pvalue": pvalue,
        "unlike_lower_bound": bound,
        "certified": 0,
        "exact_null": bool(fitted.detectors[0].exact_null),
        "detectable_share": share,
        "labels_possible": bool(1.0 / (m + 1) <= share_delta / k),  # the smallest p-value BH could certify in a fold
    }


def explained(
    config: AuditConfig,
    inputs: Inputs,
    ref: Reference,
    fitted: CrossFit,
    cal: Calibration,
    traj: Trajectories,
    cluster: Any | None = None,
) -> tuple[dict, dict]:
    """Stage 6: attributions and replays (a grid drawn for built-in envs, named features and actions for others) of the
    most significant flags; on a cluster, one task per fold."""
    explanations: dict[int, dict] = {}
    replays: dict[int, list] = {}
    if not config.explain:
        return explanations, replays
    order = [int(i) for i in np.argsort(cal.pvalue, kind="stable") if cal.flagged[i]][: config.max_explained]
    draw = frames(inputs)

    def frame(i: int, t: int) -> str | list[str]:
        return draw(traj.obs[i, t].numpy(), plain(traj.actions[i, t]))

    by_fold = (
        {int(k): [i for i in order if fitted.fold[i] == k] for k in np.unique(fitted.fold[order])} if order else {}
    )
    items = [(k, ref.test.subset(np.array(rows))) for k, rows in by_fold.items()]
    if cluster is not None and items:  # one task per fold: a task per trajectory would cost more than its attributions
        outs = cluster.map(explain_fold, items, common=(fitted.detectors, ref.fit), kind="explanation batches")
    else:
        outs = [explain_fold(fitted.detectors, ref.fit, item) for item in items]
    found = {i: ex for rows, exs in zip(by_fold.values(), outs) for i, ex in zip(rows, exs)}
    for i in order:
        ex = found[i]
        if ex is None:
            continue
        explanations[i] = ex
        replays[i] = [frame(i, t) for t in range(int(traj.mask[i].sum()))]
    return explanations, replays


def explain_fold(detectors: list[Detector], fit: Episodes, item: tuple[int, Episodes]) -> list[dict | None]:
    """The explanations of flagged trajectories of one fold (``item``: the fold, and those trajectories) by its
    detector."""
    fold, episodes = item
    return [detectors[fold].explain(episodes, j, fit) for j in range(episodes.n_episodes)]


def export_monitor(config: AuditConfig, inputs: Inputs, ref: Reference, fitted: CrossFit, path: str | Path) -> None:
    """Write the runtime monitor: the folds' step detectors, calibrated on the held-out episodes (the lookahead needs
    the env's simulator, which a deployed imitator does not have: the monitor carries its discriminators' evidence).
    A forecast's monitor is calibrated on fresh trajectories of the imitator instead (:meth:`Monitor.forecasting`)."""
    common = dict(
        detectors=[d.step_detector() for d in fitted.detectors],
        cal=ref.cal,
        rule=config.score_rule,
        alpha=config.alpha,
        drift_quantile=config.drift_quantile,
        taps=read_taps(config),
        imitator_sha256=inputs.info.sha256,
        env_id=inputs.info.env_id,
    )
    if detector_class(config.detector).forecasts:
        # the audit's own detectors stay as they were (its explanations come after); the monitor's probes learn more
        learn = fresh_episodes(config, inputs, stream="monitor-probe", starts=config.monitor_probe_episodes)
        common["detectors"] = [copy.deepcopy(d) for d in common["detectors"]]  # type: ignore[union-attr]
        for k, det in enumerate(common["detectors"]):  # type: ignore[arg-type]
            det.refit_probe(ref.fit, learn, seed=derive_seed(config.seed, "monitor-probe", k))
        del learn
        fresh = fresh_episodes(config, inputs, repeats=config.monitor_futures)
        monitor = Monitor.forecasting(**common, fresh=fresh, futures=config.monitor_futures)  # type: ignore[arg-type]
    else:
        monitor = Monitor.calibrated(**common)  # type: ignore[arg-type]
    monitor.save(path)


def fresh_episodes(
    config: AuditConfig, inputs: Inputs, *, stream: str = "monitor", starts: int | None = None, repeats: int = 1
) -> Episodes:
    """Fresh trajectories of the imitator from ``starts`` (default ``config.monitor_episodes``) starts seeded apart
    from the audited ones and from another ``stream``'s, ``repeats`` from each (start-major)."""
    traj = rollout(
        inputs.model,
        inputs.info.env_id,
        episodes=config.monitor_episodes if starts is None else starts,
        seed=derive_seed(config.seed, stream),
        repeats=repeats,
        env_kwargs=inputs.info.env_kwargs,
        taps=read_taps(config),
        greedy=config.actions == "greedy",
    )
    return Episodes(obs=traj.obs, actions=traj.actions, mask=traj.mask, taps=dict(traj.activations.taps))


def provenance(config: AuditConfig, inputs: Inputs) -> dict[str, Any]:
    """The report's account of what was audited against what, with which settings (:func:`assemble`'s arguments)."""
    info, demos = inputs.info, inputs.demos
    return {
        "settings": config.settings(),
        "policy": config.policy,
        "imitator": {
            "sha256": info.sha256,
            "arch": info.arch,
            "env_id": info.env_id,
            "parameters": info.n_params,
            "provenance": info.provenance,
        },
        "demonstrations": {
            "sha256": inputs.demos_sha256,
            "source": demos.source,
            "episodes": demos.n_episodes,
            "fit_episodes": int(len(inputs.fit_episodes)),
            "calibration_episodes": int(len(inputs.calibration_episodes)),
        },
        "env": {"id": info.env_id, "kwargs": info.env_kwargs},
    }


def run_audit(
    config: AuditConfig,
    progress: Progress | None = None,
    *,
    should_stop: Callable[[], bool] | None = None,
    trajectories: Trajectories | None = None,
    monitor: str | Path | None = None,
    cluster: Any | None = None,
) -> dict[str, Any]:
    """Audit ``config.imitator`` against ``config.demos``; returns a validated AuditReport dict.

    Args:
        config: the audit's settings.
        progress: called with (stage, fraction of the audit done).
        should_stop: polled at each stage boundary; when it returns True the audit raises ``InterruptedError``.
        trajectories: audit these instead of rolling the imitator out (they must carry the
            activations the detector reads), e.g. held-out demonstrator episodes for a null test.
        monitor: also write the runtime monitor (:mod:`audit.detect.monitor`) here.
        cluster: an :class:`audit.cluster.Cluster` to run the rollout shards, the cross-fitted detectors (one task per
            fold) and the explanations on, as tasks (same report).

    Raises:
        ValueError: inputs that cannot be audited (the message names the problem).
        InterruptedError: stopped through ``should_stop``.
    """
    if monitor is not None:
        check_monitorable(config)
    clock = StageClock(progress=progress, should_stop=should_stop)
    torch.manual_seed(config.seed)
    inputs = load(config)
    if inputs.taps != config.taps:
        config = replace(config, taps=inputs.taps)
    clock.done("load")

    traj = trajectories or rolled_out(config, inputs, clock, cluster)
    clock.done("rollout")

    ref = reference(config, inputs, traj)
    clock.done("reference")

    search = searched(config, inputs, ref, clock, cluster)
    clock.done("search")

    fitted = cross_fit(
        detector_factory(config, inputs),
        ref.fit,
        ref.cal,
        ref.test,
        folds=config.folds,
        seed=config.seed,
        progress=lambda frac: clock.within("discriminate", frac),
        cluster=cluster,
    )
    clock.done("discriminate")

    cal, severity, combined, batch = calibrated(config, ref, fitted, levels(config, inputs)[0])
    if monitor is not None:
        export_monitor(config, inputs, ref, fitted, monitor)
    clock.done("calibrate")

    explanations, replays = explained(config, inputs, ref, fitted, cal, traj, cluster)
    clock.done("explain")

    records = trajectory_records(
        traj, fitted.fold, fitted.test_evidence, cal, severity, ref.entropy, explanations, replays, combined=combined
    )
    report = assemble(
        **provenance(config, inputs),
        timings=clock.timings,
        records=records,
        summary=summarize(records, cal, alpha=config.alpha, bh=config.bh, batch=batch),
        search=search,
    )
    clock.done("report")
    clock.timings["total"] = round(time.perf_counter() - clock.start, 4)
    return report
