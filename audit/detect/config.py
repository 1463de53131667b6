"""AuditConfig: every setting of one audit, defined once with its bounds (CLI options, the API schema and the remote
gate come from it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from audit.detect.calibrate import RULES
from audit.detect.registry import REGISTRY
from audit.options import check, setting
from audit.report.gate import GatePolicy

MAX_MONITOR_TRAJECTORIES = 65_536
"""Most fresh trajectories a forecast monitor is calibrated on (starts x futures): they are held in memory at once."""


@dataclass(frozen=True, kw_only=True)
class AuditConfig:
    """One audit of one imitator against one set of demonstrations."""

    imitator: str
    """Path of the imitator checkpoint (.safetensors)."""
    demos: str
    """Path of the demonstrations (.safetensors)."""
    episodes: int = setting(256, ge=2, service_max=4096)
    """Imitator trajectories to roll out and audit."""
    shard_episodes: int = setting(1024, ge=1, service_max=4096)
    """Episodes per rollout shard: shard k rolls out episodes k*shard .. with its own action-sampling seed (seed +
    k*shard),
    one task each on Ray; the same shards locally, so the report does not depend on where it ran."""
    actions: str = setting("sample", choices=("sample", "greedy"))
    """How the audited rollouts act: sample the imitator's policy (what a stochastic imitator does when deployed), or
    take its most likely action (a deterministic deployment). The lookahead's futures always sample."""
    seed: int = setting(1_000_000, ge=0, le=2**62)
    """Episode e is seeded seed + e; also seeds splits, folds and discriminators (keep apart from the demonstrations'
    seeds)."""
    alpha: float = setting(0.01, ge=1e-4, le=0.5)
    """Largest share of demonstrator-like trajectories that may be flagged (the FDR with --bh)."""
    bh: bool = setting(False)
    """Benjamini-Hochberg over the batch instead of per-trajectory alpha."""
    folds: int = setting(2, ge=2, le=20, service_max=10)
    """Cross-fitting folds over the imitator's trajectories."""
    detector: str = setting("discriminator", choices=REGISTRY.keys())
    """Evidence: a fresh cross-fitted discriminator, the imitator's intent (KL of its head from a reference policy),
    the discriminator on the imitator's counterfactual futures (lookahead), both of the last two calibrated apart and
    combined (combined), the futures from a few fixed steps only, each an exact test (foresight), a probe on the
    activations that predicts the discriminator's evidence on the steps ahead, with no simulator (forecast), or
    Mahalanobis distance of the core activations."""
    allow_training_demos: bool = setting(False)
    """Audit against the very demonstrations the imitator was trained on (refused by default: in-sample activations and
    behaviour make demonstrator-like trajectories look rarer than they are, so the p-values and the gate lose their
    level)."""
    departure_key: str = setting("")
    """Env info key whose truthiness marks a departure step, the ground truth reports and benchmarks compare flags with
    (never shown to a detector); '' = the demonstrations' key (default 'departure')."""
    taps: tuple[str, ...] = setting(("encoder", "core", "head"))
    """Imitator taps the discriminator reads besides observation and action ('' = behaviour only)."""
    raw_grid: bool = setting(False)
    """Also read built-in envs' one-hot grid planes raw (implied by behaviour only)."""
    disc_hidden: int = setting(128, ge=1, service_max=1024)
    """Discriminator width."""
    disc_steps: int = setting(200, ge=1, service_max=5000)
    """Adam steps per discriminator (class-balanced minibatches)."""
    reference_hidden: int = setting(64, ge=1, service_max=1024)
    """Width of the intent detector's reference policy of the demonstrator."""
    reference_steps: int = setting(300, ge=1, service_max=5000)
    """Adam steps that fit the reference policy (on the fit demonstrations only)."""
    lookahead_horizon: int = setting(4, ge=1, service_max=64)
    """Lookahead and foresight: steps each counterfactual future runs ahead."""
    lookahead_samples: int = setting(1, ge=1, service_max=32)
    """Lookahead: futures sampled from each branching step (more than 1 averages them; the null is exact for 1)."""
    lookahead_every: int = setting(1, ge=1, service_max=1000)
    """Lookahead: branch every this many steps (the forecast carries over in between)."""
    forecast_horizon: int = setting(16, ge=1, service_max=1000)
    """Forecast: steps of the recorded continuation whose peak discriminator evidence the probe learns to predict."""
    forecast_history: bool = setting(False)
    """Forecast: the probe also reads the running mean and maximum of the observed steps so far (the behaviour-only
    sequence baseline, with --taps '')."""
    monitor_episodes: int = setting(2048, ge=2, service_max=16_384)
    """Forecast monitor: fresh starts (env seeds) of the imitator; its alarm threshold is calibrated on those whose
    every simulated future looks demonstrator-like."""
    monitor_futures: int = setting(4, ge=1, service_max=16)
    """Forecast monitor: imitator futures simulated from each calibrating start (a start calibrates only if all of
    them look demonstrator-like)."""
    monitor_probe_episodes: int = setting(4096, ge=1, service_max=16_384)
    """Forecast monitor: fresh imitator trajectories (apart from the calibrating ones) its probe is fitted on again,
    beyond the audit's folds."""
    search: int = setting(0, ge=0, service_max=65_536)
    """Active audit: screen this many fresh layouts (env seeds) with the imitator alone and confirm the most surprising
    ones against the demonstrator (0 = off; see audit/detect/search.py)."""
    search_keep: int = setting(8, ge=1, service_max=64)
    """Active audit: layouts kept from the screen and confirmed (the search's level is split over them)."""
    search_repeats: int = setting(16, ge=2, service_max=32)
    """Active audit: fresh episodes of the imitator and of the demonstrator on each kept layout."""
    demonstrator: str = setting("", api=False)
    """Active audit: a demonstrator checkpoint to ask on the kept layouts ('' = the built-in planner preset that
    recorded the demonstrations, where it did; otherwise the layouts are listed unconfirmed)."""
    calibration_fraction: float = setting(0.5, ge=0.05, le=0.95)
    """Share of demonstration episodes held out for calibration (never trained on)."""
    max_fit_episodes: int = setting(1000, ge=1, service_max=10_000)
    """Most demonstration episodes a detector learns from."""
    max_calibration_episodes: int = setting(1000, ge=1, service_max=10_000)
    """Most held-out demonstration episodes scored for calibration."""
    drift_quantile: float = setting(0.95, ge=0.5, le=0.9999)
    """CUSUM drift (and the severity rule's bar): this quantile of the calibration steps' evidence."""
    grid_view: bool = setting(True)
    """Built-in envs: also read the tiles under the agent and where its action leads."""
    grid_offsets: bool = setting(True)
    """Built-in envs, with the tile view: also read where the nearest goal and special tile of each kind lie from the
    agent (row and column offsets, distance), which shows an approach before the step onto the tile (relative to the
    agent, so no layout is learned; ``--no-grid-offsets`` reads the tiles under and ahead of the agent only)."""
    score_rule: str = setting("peak", choices=RULES)
    """Trajectory score: peak (the strongest step's evidence) or cusum (evidence summed over a run of steps)."""
    sustained_steps: int = setting(3, ge=1, service_max=1000)
    """Consecutive steps above the drift that make a flag sustained."""
    confident_entropy: float = setting(0.5, ge=0.0, le=100.0)
    """Mean policy entropy (nats) at most which a sustained departure is deliberate."""
    explain: bool = setting(True)
    """Integrated Gradients for flagged trajectories."""
    max_explained: int = setting(50, ge=0, service_max=500)
    """Most flagged trajectories explained (the most significant first)."""
    policy: GatePolicy = setting(default_factory=GatePolicy, cli=False, api=False)
    """The gate's pass/fail policy (the verdict is in every report)."""

    def __post_init__(self) -> None:
        check(self)
        if len(self.departure_key) > 64 or not self.departure_key.isprintable():
            raise ValueError(f"departure_key must be at most 64 printable characters, got {self.departure_key[:80]!r}")
        if self.episodes < self.folds:
            raise ValueError(f"episodes ({self.episodes}) must be at least folds ({self.folds})")
        if self.monitor_episodes * self.monitor_futures > MAX_MONITOR_TRAJECTORIES:
            raise ValueError(
                f"monitor_episodes x monitor_futures must be at most {MAX_MONITOR_TRAJECTORIES:,}, got "
                f"{self.monitor_episodes * self.monitor_futures:,}"
            )

    @property
    def behaviour_only(self) -> bool:
        return not self.taps

    def settings(self) -> dict[str, Any]:
        """The settings as the report records them (file names, not paths)."""
        out = asdict(self)
        out["taps"] = list(self.taps)
        out["imitator"] = Path(self.imitator).name
        out["demos"] = Path(self.demos).name
        out["demonstrator"] = Path(self.demonstrator).name if self.demonstrator else ""
        return out
