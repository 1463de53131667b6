"""The batch's collective test: is the audited batch exchangeable with the demonstrator's held-out episodes, and how
many of its trajectories, at least, are not.

Per fold k, the n_k audited trajectories and the m calibration episodes are scored by the same
discriminator, which never trained on either; under the global null ("the imitator's trajectories
are exchangeable with the demonstrator's") the n_k audited scores take a uniformly random set of
the N = n_k + m ranks (ties broken at random). The statistic reads where they sit among the top:

    T = min over r in {1, 2, 4, ...} of P(Hypergeom(N, n_k, r) >= #audited among the top r),

small when audited trajectories crowd the top (a few extreme departures at r = 1, 2; a broadly
distinguishable imitator at large r). Its null distribution depends on (n_k, m) only and is read
off random rank sets (``draws`` of them): the fold's p-value (1 + #{draws with T <= t}) / (draws + 1)
is exactly valid (Magnani, Sesia et al., conformalized closed testing; Bates et al., conformal
p-values). Folds share the calibration episodes and each fold's discriminator trained on the others'
trajectories, so their tests are combined by Bonferroni (level / K each), valid whatever their
dependence.

Lower confidence bound (closed testing): "at most d of the fold's trajectories are unlike the
demonstrator's" is rejected when the local test rejects the n_k - d lowest-scored audited
trajectories (the least favourable set: the statistic only grows when a trajectory is swapped for
a higher-scored one); the bound is the first d it does not reject, summed over folds (each at
level / K). With probability at least 1 - level it does not exceed the true count, and it is 0 -
the global null stands - with probability at least 1 - level when the null is true.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

DRAWS = 1999
"""Random rank sets per null distribution: p-values resolve to 1 / 2,000."""


def _radii(total: int) -> np.ndarray:
    """The top-r cut-offs read: 1, 2, 4, ... up to half the pooled size (at least 1)."""
    out = [1]
    while out[-1] * 2 <= max(1, total // 2):
        out.append(out[-1] * 2)
    return np.array(out, dtype=np.int64)


@lru_cache(maxsize=256)
def _tail_table(total: int, n_test: int) -> np.ndarray:
    """[len(radii), max_r + 2] log P(Hypergeom(total, n_test, r) >= x) for each radius r and x = 0..max_r + 1."""
    radii = _radii(total)
    top = int(radii[-1])
    table = np.full((len(radii), top + 2), -np.inf)
    lc = lambda a, b: math.lgamma(a + 1) - math.lgamma(b + 1) - math.lgamma(a - b + 1)  # noqa: E731 - log C(a, b)
    for i, r in enumerate(radii.tolist()):
        lo, hi = max(0, r - (total - n_test)), min(r, n_test)
        logpmf = np.array([lc(n_test, x) + lc(total - n_test, r - x) - lc(total, r) for x in range(lo, hi + 1)])
        # tail sums from the top down, in log space
        tails = np.logaddexp.accumulate(logpmf[::-1])[::-1]
        table[i, : lo + 1] = 0.0
        table[i, lo : hi + 1] = np.minimum(tails, 0.0)
    return table


def _statistic(top_counts: np.ndarray, total: int, n_test: int) -> np.ndarray:
    """T [...] (log scale) of audited counts among the top r [..., len(radii)]."""
    table = _tail_table(total, n_test)
    rows = np.arange(table.shape[0])
    return table[rows, top_counts].min(axis=-1)


def _top_counts(is_test_sorted: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """[..., len(radii)] audited among the top r, from indicators [..., N] sorted by score, highest first."""
    return np.cumsum(is_test_sorted, axis=-1)[..., radii - 1]


@lru_cache(maxsize=256)
def _null(n_test: int, m: int) -> np.ndarray:
    """Sorted null draws [DRAWS] of T for n_test audited among n_test + m (seeded: the same everywhere)."""
    total = n_test + m
    radii = _radii(total)
    rng = np.random.default_rng([n_test, m, 20231])
    # the top ranks of a uniformly random rank set, drawn one rank at a time without replacement (only the ranks the
    # statistic reads): rank i is audited with probability (audited left) / (ranks left)
    left = np.full(DRAWS, float(n_test))
    is_test = np.empty((DRAWS, int(radii[-1])), dtype=bool)
    for i, u in enumerate(rng.random((int(radii[-1]), DRAWS))):
        is_test[:, i] = u * (total - i) < left
        left -= is_test[:, i]
    return np.sort(_statistic(_top_counts(is_test, radii), total, n_test))


def fold_pvalue(test: np.ndarray, cal: np.ndarray, *, rng: np.random.Generator) -> float:
    """The exact p-value of one fold's global null from its audited scores [n] and calibration scores [m].

    Ties are broken at random (``rng``), so the audited set's ranks are uniform under the null even for tied scores.
    """
    n, m = len(test), len(cal)
    if n == 0:
        return 1.0
    total = n + m
    scores = np.concatenate([np.asarray(test, dtype=float), np.asarray(cal, dtype=float)])
    order = np.lexsort((rng.random(total), -scores))  # highest first, random among ties
    is_test = (order < n)[None, :]
    t = _statistic(_top_counts(is_test, _radii(total)), total, n)[0]
    null = _null(n, m)
    return float((1 + np.searchsorted(null, t + 1e-12, side="right")) / (len(null) + 1))


def fold_lower_bound(test: np.ndarray, cal: np.ndarray, level: float, *, rng: np.random.Generator) -> int:
    """Closed-testing lower bound, at confidence 1 - ``level``, on how many of a fold's audited trajectories are unlike
    the calibration episodes (see the module docstring)."""
    ranked = np.sort(np.asarray(test, dtype=float))  # lowest first: the least favourable subsets are prefixes
    n = len(ranked)
    for d in range(n + 1):
        if d == n or fold_pvalue(ranked[: n - d], cal, rng=rng) > level:
            return d
    return n


@dataclass(frozen=True, kw_only=True)
class Collective:
    """The batch's collective test.

    Attributes:
        pvalue: Bonferroni-combined p-value of the global null over the folds.
        fold_pvalues: [K] each fold's exact p-value.
        lower_bound: at least this many audited trajectories are unlike the demonstrator's, at confidence 1 - level.
        level: the level of the bound (and of the test it implies: lower_bound >= 1 iff pvalue <= level).
    """

    pvalue: float
    fold_pvalues: np.ndarray
    lower_bound: int
    level: float


def collective_test(
    score: np.ndarray, cal_scores: np.ndarray, fold: np.ndarray, *, level: float, seed: int
) -> Collective:
    """The collective test of E audited trajectory scores [E] (fold [E]) against each fold's calibration scores [K, m].

    Raises:
        ValueError: a level outside (0, 1), or shapes that do not agree.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    k = cal_scores.shape[0]
    if len(score) != len(fold) or (len(fold) and int(np.max(fold)) >= k):
        raise ValueError(f"{len(score)} scores, {len(fold)} folds for {k} calibration sets")
    rng = np.random.default_rng([int(seed) % 2**63, 7])
    per = np.array([fold_pvalue(score[fold == j], cal_scores[j], rng=rng) for j in range(k)])
    bound = sum(fold_lower_bound(score[fold == j], cal_scores[j], level / k, rng=rng) for j in range(k))
    return Collective(
        pvalue=float(min(1.0, k * per.min())) if k else 1.0, fold_pvalues=per, lower_bound=int(bound), level=level
    )


def certify(pvalue: np.ndarray, fold: np.ndarray, level: float) -> np.ndarray:
    """[E] bool: trajectories Benjamini-Hochberg certifies within their fold at ``level`` / K (conformal p-values of one
    fold share one calibration set and are PRDS, so BH controls the fold's FDR; on the global null, the chance of any
    certification is at most ``level``)."""
    from audit.detect.calibrate import benjamini_hochberg

    k = int(np.max(fold)) + 1 if len(fold) else 0
    out = np.zeros(len(pvalue), dtype=bool)
    for j in range(k):
        rows = np.flatnonzero(fold == j)
        if len(rows):
            out[rows] = benjamini_hochberg(pvalue[rows], level / k)[0]
    return out


@lru_cache(maxsize=64)
def detectable_share(
    n: int,
    m: int,
    folds: int,
    delta: float,
    *,
    tolerance: float = 0.0,
    power: float = 0.9,
    trials: int = 100,
    seed: int = 0,
) -> float | None:
    """The smallest share of n audited trajectories that, departing with scores above every calibration episode (the
    best case), makes the gate's collective check (lower bound above ``tolerance`` n, at ``delta``) fail with
    probability >= ``power``; None when even every trajectory departing would not (too few calibration episodes)."""
    rng = np.random.default_rng([seed, n, m, folds])
    fold = np.arange(n) % folds
    need = math.floor(tolerance * n)
    if need > 0:  # each trial then walks the whole bound: fewer trials, a coarser figure
        trials = max(10, trials // 5)

    def fails(j: int) -> float:
        hits = 0
        for t in range(trials):
            score = rng.random(n)
            score[rng.choice(n, j, replace=False)] = 2.0
            cal = np.tile(rng.random(m), (folds, 1))
            if need == 0:  # the bound is >= 1 exactly when the global test rejects: no need to walk the bound
                tie = np.random.default_rng(t)
                hits += (
                    min(1.0, folds * min(fold_pvalue(score[fold == f], cal[f], rng=tie) for f in range(folds))) <= delta
                )
            else:
                hits += collective_test(score, cal, fold, level=delta, seed=t).lower_bound > need
        return hits / trials

    if fails(n) < power:
        return None
    lo, hi = need, n  # fails(hi) >= power; search the smallest such count
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if fails(mid) >= power else (mid, hi)
    return hi / n
