"""The runtime monitor an audit exports: its fitted detectors and calibrated threshold, scoring a live trajectory step
by step.

``imitaudit audit ... --monitor monitor.safetensors`` writes it; a team deploys it beside the
imitator: ``Monitor.load(path).step(obs, actions, activations)`` gives each step's evidence
(the mean over the audit's cross-fitted detectors), the trajectory's score so far (by the
audit's score rule) and an alarm when that score crosses the threshold. The threshold is
calibrated like the audit's, on the held-out demonstrator episodes' mean evidence, so a
demonstrator-like trajectory raises the alarm with probability at most alpha.

An audit by the ``lookahead`` or ``combined`` detector exports its discriminators' evidence on
the steps taken: the lookahead clones the env, and a deployed imitator has no simulator
beside it. Such a monitor alarms at the departing step, not on the approach. The ``forecast`` detector's monitor
carries a probe that predicts the discriminator's evidence on the steps ahead from the imitator's activations
(:mod:`audit.detect.forecast`), so it can alarm on the approach with no simulator.

The file is safetensors (weights) with JSON metadata (sizes, view, threshold); it is rebuilt
from that metadata and code of this package, never unpickled. It names the imitator's sha256,
and loading it for another imitator is refused.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from audit.detect.calibrate import advance, score_threshold, trajectory_scores
from audit.detect.detectors import Detector, Episodes
from audit.detect.registry import REGISTRY
from models.formats import MONITOR_SCHEMA
from models.safetensors_io import read_safetensors, write_safetensors

SCHEMA = MONITOR_SCHEMA


def _describe(det: Detector) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(metadata, tensors) of one fitted detector, its kind named in the metadata."""
    meta, tensors = det.monitor_state()
    return {"kind": det.name, **meta}, tensors


def _rebuild(meta: dict[str, Any], tensors: dict[str, Tensor]) -> Detector:
    """A detector from its metadata and weights (the inverse of :func:`_describe`), by a registered class's name."""
    cls = REGISTRY.get(str(meta.get("kind")))
    if cls is None or not cls.monitorable:
        raise ValueError("the monitor names a detector kind this package cannot rebuild")
    return cls.from_monitor_state(meta, tensors)


class Monitor:
    """Scores live trajectories of one imitator, a batch of B episodes at a time.

    Args:
        detectors: the audit's fitted detectors (their evidence is averaged).
        rule: the score rule (``peak`` or ``cusum``).
        threshold: the score above which the alarm rises.
        drift: the CUSUM drift.
        taps: the imitator taps the detectors read.
        imitator_sha256: the audited imitator's checkpoint hash.
        env_id: its env.
    """

    def __init__(
        self,
        *,
        detectors: list[Detector],
        rule: str,
        threshold: float,
        drift: float,
        taps: tuple[str, ...],
        imitator_sha256: str,
        env_id: str,
    ) -> None:
        self.detectors, self.rule, self.threshold, self.drift = detectors, rule, float(threshold), float(drift)
        self.taps, self.imitator_sha256, self.env_id = tuple(taps), imitator_sha256, env_id
        self._score: Tensor | None = None
        # a detector reading the trajectory's history scores the whole prefix each step (its last step is the new one)
        self._history = any(d.reads_history for d in detectors)
        self._prefix: Episodes | None = None

    def evidence(self, episodes: Episodes) -> Tensor:
        """Mean evidence [E, T] of the detectors over whole episodes."""
        with torch.no_grad():
            return torch.stack([d.evidence(episodes) for d in self.detectors]).mean(dim=0)

    def reset(self, batch: int = 1) -> None:
        """Start B new trajectories."""
        # from -inf, as the calibration's running peak over live steps: with a negative threshold, no alarm at step 0
        self._score = torch.full((batch,), -math.inf) if self.rule == "peak" else torch.zeros(batch)
        self._prefix = None

    def step(self, obs: Any, actions: Any, activations: dict[str, Any]) -> dict[str, np.ndarray]:
        """Score one step of each of the B trajectories.

        Args:
            obs: [B, D] observations before the actions.
            actions: [B] the actions taken, or [B, d] in a ``Box`` env.
            activations: tap name -> [B, F] the imitator's activations at this step.

        Returns:
            ``{"evidence": [B], "score": [B], "alarm": [B] bool}``.

        Raises:
            RuntimeError: before :meth:`reset`.
            ValueError: inputs of the wrong shape or a missing tap.
        """
        if self._score is None:
            raise RuntimeError("reset() before step()")
        obs = torch.as_tensor(np.asarray(obs), dtype=torch.float32)
        raw = np.asarray(actions)
        actions = torch.as_tensor(raw, dtype=torch.float32 if raw.ndim == 2 else torch.int64)
        b = len(self._score)
        if obs.dim() != 2 or obs.shape[0] != b or actions.shape[:1] != (b,) or actions.dim() > 2:
            raise ValueError(
                f"step needs obs [{b}, D] and actions [{b}] (or [{b}, d]), got {tuple(obs.shape)} and "
                f"{tuple(actions.shape)}"
            )
        missing = [t for t in self.taps if t not in activations]
        if missing:
            raise ValueError(f"step needs activations at tap(s) {', '.join(missing)}")
        taps = {t: torch.as_tensor(np.asarray(activations[t]), dtype=torch.float32)[:, None] for t in self.taps}
        for t, a in taps.items():
            if a.dim() != 3 or a.shape[0] != b:
                raise ValueError(f"activations at tap {t!r} must be [{b}, F], got {tuple(a.shape[::2])}")
        episodes = Episodes(
            obs=obs[:, None], actions=actions[:, None], mask=torch.ones(b, 1, dtype=torch.bool), taps=taps
        )
        if self._history:
            episodes = self._prefix = episodes if self._prefix is None else _extend(self._prefix, episodes)
        try:
            ev = self.evidence(episodes)[:, -1]
        except (RuntimeError, IndexError) as e:
            raise ValueError(f"inputs do not fit this monitor: {str(e).splitlines()[0]}") from None
        self._score = advance(self._score, ev, self.drift, self.rule)
        return {
            "evidence": ev.numpy(),
            "score": self._score.numpy().copy(),
            "alarm": (self._score > self.threshold).numpy(),
        }

    @classmethod
    def calibrated(
        cls,
        *,
        detectors: list[Detector],
        cal: Episodes,
        rule: str,
        alpha: float,
        drift_quantile: float,
        taps: tuple[str, ...],
        imitator_sha256: str,
        env_id: str,
    ) -> "Monitor":
        """A monitor whose threshold is calibrated on held-out demonstrator episodes ``cal``."""
        with torch.no_grad():
            ev = torch.stack([d.calibration_evidence(cal) for d in detectors]).mean(dim=0)
        drift = float(torch.quantile(ev[cal.mask], drift_quantile))
        _, scores = trajectory_scores(ev, cal.mask, torch.full((cal.n_episodes,), drift), rule)
        return cls(
            detectors=detectors,
            rule=rule,
            threshold=score_threshold(scores, alpha),
            drift=drift,
            taps=taps,
            imitator_sha256=imitator_sha256,
            env_id=env_id,
        )

    @classmethod
    def forecasting(
        cls,
        *,
        detectors: list[Detector],
        cal: Episodes,
        fresh: Episodes,
        futures: int,
        rule: str,
        alpha: float,
        drift_quantile: float,
        taps: tuple[str, ...],
        imitator_sha256: str,
        env_id: str,
    ) -> "Monitor":
        """A monitor of forecasts (:mod:`audit.detect.forecast`), its threshold calibrated on fresh trajectories of
        the imitator itself from starts whose simulated futures all look demonstrator-like.

        A forecast is a function of the trajectory so far, and before an imitator diverges its history can be
        distributed exactly as the demonstrator's (HiddenSupervisor's sleeper): calibrated on demonstrator episodes,
        a monitor could then not alarm before the divergent step. What it tests instead is this imitator's own
        course, start by start. ``fresh`` holds ``futures`` trajectories of the imitator from each of its starts
        (start-major); a start *calibrates* when every one of its futures looks demonstrator-like to the detectors'
        discriminators (each one's score at most their alpha threshold on the held-out demonstrator episodes
        ``cal``). The forecast's score is calibrated at alpha on the first trajectory of each calibrating start. So
        from a new start whose futures would all look demonstrator-like, the imitator raises the alarm with
        probability at most alpha (conformal: the starts are exchangeable, and the filter treats each alike). A
        start from which the imitator departs even now and then does not calibrate, so a trajectory that happens
        not to depart from it does not raise the threshold: the monitor can alarm on such a start before any step
        departs.

        Raises:
            ValueError: fewer calibrating starts than alpha needs, or ``fresh`` not a whole number of starts.
        """
        if futures < 1 or fresh.n_episodes % futures:
            raise ValueError(f"fresh holds {fresh.n_episodes} trajectories, not a whole number of starts of {futures}")
        screens = [d.inner for d in detectors]  # type: ignore[attr-defined]
        disc = cls.calibrated(
            detectors=screens,
            cal=cal,
            rule=rule,
            alpha=alpha,
            drift_quantile=drift_quantile,
            taps=taps,
            imitator_sha256=imitator_sha256,
            env_id=env_id,
        )
        with torch.no_grad():
            looks = disc.evidence(fresh)
            forecast = torch.stack([d.evidence(fresh) for d in detectors]).mean(dim=0)
        drift = torch.full((fresh.n_episodes,), disc.drift)
        like = torch.from_numpy(trajectory_scores(looks, fresh.mask, drift, rule)[1] <= disc.threshold)
        first = torch.arange(0, fresh.n_episodes, futures)
        calibrates = first[like.view(-1, futures).all(dim=1)]
        mask = fresh.mask[calibrates]
        forecast_drift = float(torch.quantile(forecast[calibrates][mask], drift_quantile)) if len(calibrates) else 0.0
        _, scores = trajectory_scores(forecast[calibrates], mask, torch.full((len(calibrates),), forecast_drift), rule)
        threshold = score_threshold(scores, alpha)
        if threshold == math.inf:
            raise ValueError(
                f"a forecast monitor at alpha {alpha} needs at least {math.ceil(1 / alpha - 1)} starts whose futures "
                f"all look demonstrator-like, got {len(calibrates)}: raise --monitor-episodes"
            )
        return cls(
            detectors=detectors,
            rule=rule,
            threshold=threshold,
            drift=forecast_drift,
            taps=taps,
            imitator_sha256=imitator_sha256,
            env_id=env_id,
        )

    def save(self, path: str | os.PathLike) -> Path:
        """Write the monitor (safetensors + JSON metadata), atomically."""
        metas, tensors = [], {}
        for k, det in enumerate(self.detectors):
            meta, weights = _describe(det)
            metas.append(meta)
            tensors.update({f"{k}.{name}": w for name, w in weights.items()})
        metadata = {
            "imitaudit.schema": SCHEMA,
            "imitator_sha256": self.imitator_sha256,
            "env_id": self.env_id,
            "rule": self.rule,
            "threshold": json.dumps(self.threshold),
            "drift": json.dumps(self.drift),
            "taps": json.dumps(list(self.taps)),
            "detectors": json.dumps(metas),
        }
        path = Path(path)
        part = path.with_name(path.name + ".part")
        write_safetensors(part, tensors, metadata)
        os.replace(part, path)  # whole or not at all
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, *, imitator_sha256: str | None = None) -> "Monitor":
        """Read a monitor; with ``imitator_sha256``, refuse one made for another imitator.

        Raises:
            ValueError: one line: not a monitor, another imitator, or weights that do not fit their metadata.
        """
        tensors, meta = read_safetensors(path)
        if meta.get("imitaudit.schema") != SCHEMA:
            raise ValueError(f"{path}: not an imitaudit monitor (schema {meta.get('imitaudit.schema')!r})")
        if imitator_sha256 is not None and meta.get("imitator_sha256") != imitator_sha256:
            raise ValueError(
                f"{path}: made for imitator {meta.get('imitator_sha256', '')[:12]}, not {imitator_sha256[:12]}"
            )
        try:
            metas = json.loads(meta["detectors"])
            detectors = []
            for k, m in enumerate(metas):
                own = {
                    name[len(f"{k}.") :]: torch.from_numpy(np.array(t))
                    for name, t in tensors.items()
                    if name.startswith(f"{k}.")
                }
                detectors.append(_rebuild(m, own))
            return cls(
                detectors=detectors,
                rule=meta["rule"],
                threshold=json.loads(meta["threshold"]),
                drift=json.loads(meta["drift"]),
                taps=tuple(json.loads(meta["taps"])),
                imitator_sha256=meta["imitator_sha256"],
                env_id=meta["env_id"],
            )
        except (KeyError, TypeError, json.JSONDecodeError, RuntimeError) as e:
            raise ValueError(f"{path}: a damaged monitor ({str(e).splitlines()[0][:200]})") from None


def _extend(prefix: Episodes, step: Episodes) -> Episodes:
    """``prefix`` [B, t] with one more step [B, 1] appended."""
    if prefix.obs.shape[2:] != step.obs.shape[2:] or set(prefix.taps) != set(step.taps):
        raise ValueError("step's inputs do not match the trajectory's earlier steps")
    return Episodes(
        obs=torch.cat([prefix.obs, step.obs], dim=1),
        actions=torch.cat([prefix.actions, step.actions], dim=1),
        mask=torch.cat([prefix.mask, step.mask], dim=1),
        taps={k: torch.cat([v, step.taps[k]], dim=1) for k, v in prefix.taps.items()},
    )


def replay(monitor: Monitor, traj: Any) -> dict[str, Any]:
    """Run ``traj`` (:class:`audit.data.rollout.Trajectories`, with the monitor's taps) through ``monitor`` step by
    step: how many episodes raised the alarm, and, where the env records departures, how many departing ones did,
    how many before departing, how many that never departed, and the median lead (departure step - first alarm
    step)."""
    monitor.reset(traj.n_episodes)
    first_alarm = np.full(traj.n_episodes, -1)
    for t in range(traj.mask.shape[1]):
        out = monitor.step(traj.obs[:, t], traj.actions[:, t], {k: v[:, t] for k, v in traj.activations.taps.items()})
        fresh = out["alarm"] & (first_alarm < 0) & traj.mask[:, t].numpy()
        first_alarm[fresh] = t
    result: dict[str, Any] = {
        "episodes": traj.n_episodes,
        "alarmed": int((first_alarm >= 0).sum()),
        "threshold": monitor.threshold,
        "rule": monitor.rule,
    }
    departed = traj.departed()
    if departed is not None:
        dep = departed.numpy()
        dep_step = np.where(dep, (traj.departure & traj.mask).float().argmax(1).numpy(), -1)
        leads = [int(dep_step[i] - first_alarm[i]) for i in np.flatnonzero(dep & (first_alarm >= 0))]
        result.update(
            departed=int(dep.sum()),
            alarmed_departed=int((dep & (first_alarm >= 0)).sum()),
            alarmed_before_departure=sum(1 for x in leads if x > 0),
            alarmed_not_departed=int((~dep & (first_alarm >= 0)).sum()),
            median_lead=float(np.median(leads)) if leads else None,
        )
    return result
