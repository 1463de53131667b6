"""The detector registry: name -> :class:`~audit.detect.detectors.Detector` class.

The pipeline, the CLI, the monitor and the benchmarks look a detector up here by its name and ask
the class what they need (its taps, evidence kinds, whether its null is exact, whether a monitor
can carry it, a factory from the audit's settings); none of them names a detector. Adding one is
its own file plus :func:`register` (``docs/detectors.md`` shows a ten-line example).
"""

from __future__ import annotations

from audit.detect.detectors import Detector, MahalanobisDetector
from audit.detect.discriminate import DiscriminatorDetector
from audit.detect.forecast import ForecastDetector
from audit.detect.foresight import ForesightDetector
from audit.detect.intent import IntentDetector
from audit.detect.lookahead import CombinedDetector, LookaheadDetector

REGISTRY: dict[str, type[Detector]] = {}
"""Every detector an audit can use, by name (a live mapping: the settings' allowed values read its keys)."""


def register(cls: type[Detector]) -> type[Detector]:
    """Add a detector class under its ``name`` (usable as a class decorator); returns the class.

    Raises:
        ValueError: another class already holds the name.
    """
    if REGISTRY.get(cls.name, cls) is not cls:
        raise ValueError(f"a detector named {cls.name!r} is already registered")
    REGISTRY[cls.name] = cls
    return cls


def detector_class(name: str) -> type[Detector]:
    """The class registered as ``name``.

    Raises:
        ValueError: no detector has that name.
    """
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown detector {name[:64]!r}; known: {', '.join(sorted(REGISTRY))}") from None


for _cls in (
    CombinedDetector,
    DiscriminatorDetector,
    ForecastDetector,
    ForesightDetector,
    IntentDetector,
    LookaheadDetector,
    MahalanobisDetector,
):
    register(_cls)
