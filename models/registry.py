"""Architecture registry: name -> imitator class, built-ins plus the ``imitaudit.architectures`` entry-point group.

A user's package adds an architecture by declaring, in its own pyproject.toml::

    [project.entry-points."imitaudit.architectures"]
    myarch = "mypackage.policies:MyImitator"

where ``MyImitator`` subclasses :class:`models.imitator.Imitator`. Checkpoints name an
architecture; the class always comes from here, never from the uploaded file.
"""

from __future__ import annotations

from importlib.metadata import entry_points

from models.imitator import GRUImitator, Imitator, ImitatorConfig, MLPImitator, TransformerImitator

ENTRY_POINT_GROUP = "imitaudit.architectures"
BUILTIN: dict[str, type[Imitator]] = {cls.arch: cls for cls in (MLPImitator, GRUImitator, TransformerImitator)}


def architectures() -> dict[str, type[Imitator]]:
    """Every known architecture: built-ins, then entry-point plugins (which cannot shadow a built-in)."""
    found = dict(BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in found:
            continue
        try:
            cls = ep.load()
        except Exception:  # noqa: BLE001 - a broken plugin must not break the built-ins
            continue
        if isinstance(cls, type) and issubclass(cls, Imitator):
            found[ep.name] = cls
    return found


def build(arch: str, config: ImitatorConfig) -> Imitator:
    """A freshly initialised imitator of architecture ``arch``.

    Raises:
        ValueError: ``arch`` is not registered.
    """
    known = architectures()
    if arch not in known:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(sorted(known))}")
    return known[arch](config=config)
