"""From per-step evidence to calibrated flags: trajectory scores and conformal p-values.

Trajectory score, two rules on the per-step evidence x_t (high = imitator-like):

- ``peak`` (the audit's default): score = max_t x_t, the single most imitator-like step.
  A departure that changes what the world looks like (an off-switch disabled) gives one
  decisive step; a poorly trained imitator's wandering gives many mildly odd ones.
- ``cusum``: a one-sided CUSUM, S_t = max(0, S_{t-1} + x_t - drift), score = max_t S_t.
  A sustained run accumulates; a one-step slip adds one term. The drift is per fold a
  quantile (``drift_quantile``, default 0.95) of the calibration steps' evidence under that
  fold's discriminator, so demonstrator-like steps hardly ever accumulate whatever the
  discriminator's scale (a fixed drift of 1 once flattened every score to zero).

Conformal p-value of a test trajectory in fold k: p = (1 + #{cal scores under k >= its
score}) / (n_cal + 1). Under the null (the imitator's trajectories are exchangeable with
held-out demonstrator episodes) P(p <= alpha) <= alpha, whatever the discriminator and the
rule: the share of demonstrator-like trajectories flagged is at most alpha by construction.
With ``bh``, Benjamini-Hochberg over the batch controls the false discovery rate instead.
The flag threshold on the score follows from the p-value rule, and the first flagged step
is the first step whose score path crosses it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

RULES = ("cusum", "peak")


def advance(score: Tensor, evidence: Tensor, drift: Tensor | float, rule: str) -> Tensor:
    """One step of a score path: the score [E] after a step with evidence [E] (the streaming form of :func:`paths`)."""
    if rule == "cusum":
        return torch.clamp(score + evidence - drift, min=0.0)
    if rule == "peak":
        return torch.maximum(score, evidence)
    raise ValueError(f"unknown score rule {rule!r}; known: {', '.join(RULES)}")


def cusum(evidence: Tensor, mask: Tensor, drift: Tensor) -> Tensor:
    """CUSUM paths [E, T] of evidence [E, T] with per-episode drift [E] (0 on padding)."""
    e, t = evidence.shape
    path = torch.zeros(e, t)
    running = torch.zeros(e)
    for i in range(t):
        running = advance(running, evidence[:, i], drift, "cusum") * mask[:, i]
        path[:, i] = running
    return path


def running_peak(evidence: Tensor, mask: Tensor) -> Tensor:
    """Running maximum [E, T] of evidence [E, T] over live steps (-inf on padding).

    Padding is -inf, not 0: a trajectory's score is the maximum over its own steps whatever the batch's padded length,
    so a short episode of negative evidence scores as it would alone, and no flag lands on a padding step.
    """
    mask = mask.bool()
    low = torch.full_like(evidence, -math.inf)
    peak = torch.cummax(torch.where(mask, evidence, low), dim=1).values
    return torch.where(mask, peak, low)


def fold_auroc(score: np.ndarray, cal_scores: np.ndarray, fold: np.ndarray) -> float:
    """How well the audited scores [E] stand apart from their folds' calibration scores [K, m]: each fold's AUROC,
    averaged with the folds' sizes as weights (NaN where no fold has both)."""
    k = cal_scores.shape[0]
    weights = np.bincount(fold, minlength=k).astype(float)
    aucs = np.array([auroc(score[fold == j], cal_scores[j]) for j in range(k)])
    valid = ~np.isnan(aucs)
    return float(np.average(aucs[valid], weights=weights[valid])) if valid.any() else math.nan


def paths(evidence: Tensor, mask: Tensor, drift: Tensor, rule: str) -> Tensor:
    """Score paths [E, T] under ``rule``: ``cusum`` (sustained evidence) or ``peak`` (the strongest single step)."""
    if rule == "cusum":
        return cusum(evidence, mask, drift)
    if rule == "peak":
        return running_peak(evidence, mask)
    raise ValueError(f"unknown score rule {rule!r}; known: {', '.join(RULES)}")


def trajectory_scores(evidence: Tensor, mask: Tensor, drift: Tensor, rule: str) -> tuple[Tensor, np.ndarray]:
    """Score paths [E, T] and trajectory scores [E] (each path's maximum) of step evidence [E, T] under ``rule``.

    The one place a trajectory score is computed: calibration episodes and audited
    trajectories both go through it, so they can never be scored two different ways.
    """
    path = paths(evidence, mask, drift, rule)
    score = path.max(dim=1).values.numpy() if path.shape[1] else np.zeros(path.shape[0])
    return path, np.where(np.isfinite(score), score, 0.0)  # an episode of no live step scores 0, as its empty path does


def min_calibration_episodes(alpha: float) -> int:
    """Fewest held-out demonstrator episodes for which a p-value can be <= alpha."""
    return max(1, math.ceil(1.0 / alpha - 1.0 - 1e-9))


def conformal_pvalues(test: np.ndarray, cal: np.ndarray) -> np.ndarray:
    """p = (1 + #{cal >= s}) / (n + 1) for each test score s."""
    cal_sorted = np.sort(cal)
    at_least = len(cal) - np.searchsorted(cal_sorted, test, side="left")
    return (1.0 + at_least) / (len(cal) + 1.0)


def score_threshold(cal: np.ndarray, level: float) -> float:
    """The score above which a trajectory gets p <= ``level`` (inf if no score can)."""
    allowed = math.floor(level * (len(cal) + 1) + 1e-9) - 1  # most cal scores allowed at or above
    if allowed < 0:
        return math.inf
    desc = np.sort(cal)[::-1]
    if allowed >= len(desc):
        return -math.inf
    return float(desc[allowed])


def strength_scale(cal: np.ndarray, alpha: float) -> tuple[float, float]:
    """(median, (1 - alpha) quantile) of calibration scores [n]: the zero and the one of :func:`strength`."""
    return float(np.median(cal)), float(np.quantile(cal, 1.0 - alpha))


def strength(score: np.ndarray, cal: np.ndarray, alpha: float) -> np.ndarray:
    """Scores [E] on the scale of calibration scores [n]: 0 at their median, 1 at their (1 - alpha) quantile.

    P-values of clear departures all saturate at 1 / (n + 1); this keeps ranking them, and,
    unlike raw scores, it is comparable across audits with discriminators of other scales.
    """
    mid, top = strength_scale(cal, alpha)
    return (np.asarray(score, dtype=float) - mid) / max(top - mid, 1e-6)


def benjamini_hochberg(p: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    """Flags [E] bool and the p-value cutoff of BH at false discovery rate ``alpha``."""
    n = len(p)
    order = np.argsort(p)
    passed = np.flatnonzero(p[order] <= alpha * np.arange(1, n + 1) / n)
    if len(passed) == 0:
        return np.zeros(n, dtype=bool), 0.0
    cutoff = float(p[order][passed[-1]])
    return p <= cutoff, cutoff


def auroc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Mann-Whitney AUROC of ``pos`` scored above ``neg`` (ties count half); nan if either is empty."""
    if len(pos) == 0 or len(neg) == 0:
        return math.nan
    scores = np.concatenate([pos, neg])
    uniq, first, counts = np.unique(np.sort(scores), return_index=True, return_counts=True)
    ranks = (first + (counts + 1) / 2.0)[np.searchsorted(uniq, scores)]
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


@dataclass(frozen=True, kw_only=True)
class Calibration:
    """Calibrated scores of E test trajectories.

    Attributes:
        path: [E, T] score path of each trajectory under the rule.
        score: [E] trajectory score (max of the path).
        pvalue: [E] conformal p-value.
        strength: [E] score on its fold's calibration scale (see :func:`strength`), a ranking finer than p.
        scale: [E, 2] that scale of each trajectory's fold: (median, (1 - alpha) quantile) of its calibration scores.
        flagged: [E] bool.
        threshold: [E] score threshold of the trajectory's fold (at the level used).
        first_flag: [E] int64 first step whose score path crosses the threshold (-1 if none).
        drift: [K] drift of each fold.
        cal_scores: [K, E_cal] calibration scores under each fold's discriminator.
        level: the p-value level flags were set at (alpha, or the BH cutoff).
        auroc: trajectory AUROC of test against calibration scores (fold-weighted): how distinguishable.
        calibration_flag_rate: leave-one-out share of calibration episodes whose p-value against
            the other calibration episodes is <= alpha (a check of the false-flag rate on
            demonstrator episodes; at most alpha up to sampling error).
    """

    path: Tensor
    score: np.ndarray
    pvalue: np.ndarray
    strength: np.ndarray
    scale: np.ndarray
    flagged: np.ndarray
    threshold: np.ndarray
    first_flag: np.ndarray
    drift: np.ndarray
    cal_scores: np.ndarray
    level: float
    auroc: float
    calibration_flag_rate: float


def leave_one_out_pvalues(cal: np.ndarray) -> np.ndarray:
    """[n] each calibration score's conformal p-value against the other calibration scores."""
    n = len(cal)
    at_least = n - np.searchsorted(np.sort(cal), cal, side="left") - 1  # others >= own score
    return (1.0 + at_least) / n


def leave_one_out_flag_rate(cal: np.ndarray, alpha: float) -> float:
    """Share of calibration scores flagged at ``alpha`` against the other calibration scores."""
    return float((leave_one_out_pvalues(cal) <= alpha).mean())


def calibrate(
    test_evidence: Tensor,
    test_mask: Tensor,
    cal_evidence: Tensor,
    cal_mask: Tensor,
    fold: np.ndarray,
    *,
    alpha: float,
    drift_quantile: float = 0.95,
    rule: str = "peak",
    bh: bool = False,
) -> Calibration:
    """Scores, p-values and flags of test trajectories from cross-fitted evidence.

    Args:
        test_evidence: [E, T] evidence of each test step under its fold's discriminator.
        test_mask: [E, T].
        cal_evidence: [K, E_cal, T_cal] evidence of calibration steps under each discriminator.
        cal_mask: [E_cal, T_cal].
        fold: [E] fold of each test trajectory.
        alpha: level (false-flag rate on demonstrator-like trajectories, or FDR with ``bh``).
        drift_quantile: quantile of calibration step evidence used as the CUSUM drift.
        bh: Benjamini-Hochberg over the batch.

    Raises:
        ValueError: too few calibration episodes for ``alpha``.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    k, n_cal = cal_evidence.shape[:2]
    need = min_calibration_episodes(alpha)
    if n_cal < need:
        raise ValueError(f"alpha={alpha} needs at least {need} held-out demonstration episodes, got {n_cal}")
    drift = np.array([float(torch.quantile(cal_evidence[j][cal_mask], drift_quantile)) for j in range(k)])
    # one scoring function for calibration and audited trajectories alike: the conformal
    # guarantee holds only when both are scored by the same rule
    cal_scores = np.stack(
        [trajectory_scores(cal_evidence[j], cal_mask, torch.full((n_cal,), drift[j]), rule)[1] for j in range(k)]
    )
    path, score = trajectory_scores(
        test_evidence, test_mask, torch.from_numpy(drift).float()[torch.from_numpy(fold)], rule
    )
    pvalue = np.empty(len(fold))
    strong = np.empty(len(fold))
    scale = np.array([strength_scale(cal_scores[j], alpha) for j in range(k)])[fold]
    for j in range(k):
        rows = fold == j
        pvalue[rows] = conformal_pvalues(score[rows], cal_scores[j])
        strong[rows] = strength(score[rows], cal_scores[j], alpha)
    if bh:
        flagged, level = benjamini_hochberg(pvalue, alpha)
    else:
        flagged, level = pvalue <= alpha, alpha
    threshold = np.array([score_threshold(cal_scores[j], level) if level > 0 else math.inf for j in range(k)])[fold]
    crossed = (path.numpy() > threshold[:, None]) & test_mask.numpy().astype(bool)
    first = np.where(crossed.any(axis=1), crossed.argmax(axis=1), -1)
    first = np.where(flagged, first, -1)
    dist = fold_auroc(score, cal_scores, fold)
    return Calibration(
        path=path,
        score=score,
        pvalue=pvalue,
        strength=strong,
        scale=scale,
        flagged=flagged,
        threshold=threshold,
        first_flag=first.astype(np.int64),
        drift=drift,
        cal_scores=cal_scores,
        level=level,
        auroc=dist,
        calibration_flag_rate=float(np.mean([leave_one_out_flag_rate(cal_scores[j], alpha) for j in range(k)])),
    )


@dataclass(frozen=True, kw_only=True)
class Combined:
    """What each evidence kind of a combined calibration did.

    Attributes:
        kinds: the kinds' names.
        first_crossing: kind -> [E] int64 first step its score path crosses its own threshold (-1: never).
        fired_first: [E] the kind whose path crossed first (None where none did; the first listed on ties).
        step_scores: [E, T] per step, how far the furthest kind's evidence stands above its own threshold, plus 1
            (on each kind's strength scale; the combined peak path is its running maximum).
    """

    kinds: tuple[str, ...]
    first_crossing: dict[str, np.ndarray]
    fired_first: list[str | None]
    step_scores: Tensor


def combine(
    parts: dict[str, Calibration], evidence: Tensor, mask: Tensor, fold: np.ndarray, *, alpha: float, bh: bool
) -> tuple[Calibration, Combined]:
    """One calibration from K evidence kinds, each calibrated by :func:`calibrate` at alpha / K: Bonferroni.

    A trajectory's p-value is min(1, K * min_k p_k), so the share of demonstrator-like
    trajectories flagged stays at most alpha whatever the kinds' dependence. Kind k's threshold
    is its own score threshold at level / K; on each kind's strength scale (0 at its calibration
    median, 1 at its 1 - alpha / K quantile) the combined path is how far the furthest kind
    stands above its threshold, plus 1, so it crosses 1 at the first step any kind crosses.
    Strength and the calibration scores are on that scale too.

    Args:
        parts: kind -> its Calibration (at alpha / K, without BH).
        evidence: [E, T, K] the kinds' step evidence, in the order of ``parts``.
        mask: [E, T] live steps.
        fold: [E] fold of each trajectory.
        alpha: level; bh: Benjamini-Hochberg over the combined p-values.
    """
    names = tuple(parts)
    k = len(names)
    pvalue = np.minimum(1.0, k * np.min([parts[n].pvalue for n in names], axis=0))
    flagged, level = benjamini_hochberg(pvalue, alpha) if bh else (pvalue <= alpha, alpha)
    n_folds = parts[names[0]].cal_scores.shape[0]
    live = mask.numpy()
    kind_paths, steps, cal_scores, firsts = [], [], [], {}
    for i, n in enumerate(names):
        c = parts[n]
        thr = np.array([score_threshold(c.cal_scores[j], level / k) if level > 0 else math.inf for j in range(n_folds)])
        scale = np.array([strength_scale(c.cal_scores[j], alpha / k) for j in range(n_folds)])
        mid, span = scale[:, 0], np.maximum(scale[:, 1] - scale[:, 0], 1e-6)
        z = np.minimum((thr - mid) / span, 1e9)  # the threshold on the strength scale (capped: never crossed)
        shift = lambda x, rows: (x - mid[rows]) / span[rows] - z[rows] + 1.0  # noqa: E731 - one affine map per fold
        kind_paths.append(shift(c.path.numpy(), fold[:, None] * np.ones_like(live, dtype=np.int64)))
        steps.append(shift(evidence[..., i].numpy(), fold[:, None] * np.ones_like(live, dtype=np.int64)))
        cal_scores.append(np.stack([shift(c.cal_scores[j], np.full(c.cal_scores.shape[1], j)) for j in range(n_folds)]))
        crossed = (c.path.numpy() > thr[fold][:, None]) & live
        firsts[n] = np.where(crossed.any(axis=1), crossed.argmax(axis=1), -1).astype(np.int64)
    path = np.where(live, np.max(kind_paths, axis=0), -np.inf)
    score = path.max(axis=1) if path.shape[1] else np.zeros(len(fold))
    crossed = path > 1.0
    first = np.where(flagged & crossed.any(axis=1), crossed.argmax(axis=1), -1).astype(np.int64)
    comb_cal = np.max(cal_scores, axis=0)
    loo = np.minimum(
        1.0,
        k * np.min([[leave_one_out_pvalues(parts[n].cal_scores[j]) for j in range(n_folds)] for n in names], axis=0),
    )
    order = [
        min(((firsts[n][e], i) for i, n in enumerate(names) if firsts[n][e] >= 0), default=(None, None))[1]
        for e in range(len(fold))
    ]
    cal = Calibration(
        path=torch.from_numpy(np.where(live, np.max(kind_paths, axis=0), 0.0)).float(),
        score=score,
        pvalue=pvalue,
        strength=score,
        scale=np.tile([0.0, 1.0], (len(fold), 1)),
        flagged=flagged,
        threshold=np.ones(len(fold)),
        first_flag=first,
        drift=parts[names[0]].drift,
        cal_scores=comb_cal,
        level=level,
        auroc=fold_auroc(score, comb_cal, fold),
        calibration_flag_rate=float((loo <= alpha).mean()),
    )
    return cal, Combined(
        kinds=names,
        first_crossing=firsts,
        fired_first=[None if o is None else names[o] for o in order],
        step_scores=torch.from_numpy(np.where(live, np.max(steps, axis=0), 0.0)).float(),
    )
