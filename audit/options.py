"""Settings defined once, as dataclass fields: the command line, the API schema and the checks come from them.

A settings class is a frozen dataclass whose fields are declared with :func:`setting`
(bounds, choices, where the field is exposed) and documented by the string literal under
each field, as CleanRL's configs are. From that one definition:

- :func:`check` validates an instance (types and bounds; one line naming the field);
- :func:`add_arguments` / :func:`from_arguments` make and read ``argparse`` options;
- :func:`request_model` makes a pydantic model for the HTTP API (the service's bounds, so
  OpenAPI shows the real request schema).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import math
import textwrap
import types
import typing
from collections.abc import Collection
from functools import cache
from typing import Any, cast

_MISSING = dataclasses.MISSING


def setting(
    default: Any = _MISSING,
    *,
    default_factory: Any = _MISSING,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
    service_max: float | None = None,
    choices: Collection[str] | None = None,
    cli: bool = True,
    api: bool = True,
    flag: str | None = None,
    invert: bool = False,
) -> Any:
    """A dataclass field with its bounds and exposure.

    Args:
        default, default_factory: as for :func:`dataclasses.field`.
        gt, ge, lt, le: bounds every caller must respect.
        service_max: a tighter upper bound the service applies, so that one request cannot
            take it down (the CLI runs on the user's own machine and is not capped).
        choices: allowed values of a string field (a live view, such as a registry's keys, is read where it is used).
        cli, api: exposed as a command-line option / an API request field.
        flag: the command-line flag, if not ``--<name-with-dashes>``.
        invert: a boolean whose flag sets it False (``--allow-x`` for ``fail_on_x``).
    """
    meta = {
        "gt": gt,
        "ge": ge,
        "lt": lt,
        "le": le,
        "service_max": service_max,
        "choices": choices,
        "cli": cli,
        "api": api,
        "flag": flag,
        "invert": invert,
    }
    return dataclasses.field(default=default, default_factory=default_factory, metadata={"imitaudit": meta})


def default_of(cls: type, name: str) -> Any:
    """The default of settings field ``name`` of ``cls``: for a caller that passes the field on, so that the default
    stays spelled once, in the field."""
    f = next((f for f in dataclasses.fields(cls) if f.name == name), None)
    if f is None:
        raise ValueError(f"{cls.__name__} has no setting {name!r}")
    return f.default_factory() if f.default_factory is not _MISSING else f.default


@cache
def field_docs(cls: type) -> dict[str, str]:
    """Field name -> the first paragraph of the string literal under it in the class body."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = cast(ast.ClassDef, tree.body[0]).body
        for node, nxt in zip(body, body[1:]):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs[node.target.id] = " ".join(nxt.value.value.strip().split("\n\n")[0].split())
    return docs


def _meta(f: dataclasses.Field) -> Any:
    """The field's settings (bounds, choices, where exposed), or None for a field that is not a setting."""
    return f.metadata.get("imitaudit")


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)  # evaluating string annotations is slow: once per class, not per field per check


def _kind(cls: type, f: dataclasses.Field) -> type:
    """The field's value type: bool, int, float, str, or tuple (of str)."""
    hint = _hints(cls)[f.name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    base = typing.get_origin(hint) or hint
    if base is typing.Union or base is types.UnionType:
        base = typing.get_origin(args[0]) or args[0]
    return tuple if base in (tuple, list) else base


def options(cls: type, where: str) -> list[dataclasses.Field]:
    """The fields of ``cls`` exposed ``where`` (``cli`` or ``api``)."""
    return [f for f in dataclasses.fields(cls) if _meta(f) is not None and _meta(f)[where]]


def check(obj: Any) -> None:
    """Check every declared field of ``obj`` against its type and bounds.

    Raises:
        ValueError: one line naming the field, its bounds and the value.
    """
    cls = type(obj)
    for f in dataclasses.fields(cls):
        meta = _meta(f)
        if meta is None:
            continue
        value, kind = getattr(obj, f.name), _kind(cls, f)
        if value is None:
            continue
        if kind in (int, float) and (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or (kind is int and not isinstance(value, int))
        ):
            raise ValueError(f"{f.name} must be {kind.__name__}, got {value!r}")
        if kind is float and not math.isfinite(value):
            raise ValueError(f"{f.name} must be a finite number, got {value!r}")
        bounds = [(meta["gt"], "gt"), (meta["ge"], "ge"), (meta["lt"], "lt"), (meta["le"], "le")]
        for bound, op in bounds:
            if bound is not None and kind in (int, float) and not _holds(value, op, bound):
                raise ValueError(f"{f.name} must be {_describe(meta)}, got {value}")
        if meta["choices"] and value not in meta["choices"]:
            raise ValueError(f"{f.name} must be one of {', '.join(sorted(meta['choices']))}, got {value!r}")


def _holds(value: float, op: str, bound: float) -> bool:
    return {"gt": value > bound, "ge": value >= bound, "lt": value < bound, "le": value <= bound}[op]


def _describe(meta: dict[str, Any]) -> str:
    low = f"> {meta['gt']}" if meta["gt"] is not None else (f">= {meta['ge']}" if meta["ge"] is not None else "")
    high = f"< {meta['lt']}" if meta["lt"] is not None else (f"<= {meta['le']}" if meta["le"] is not None else "")
    return " and ".join(x for x in (low, high) if x)


def _flag(f: dataclasses.Field) -> str:
    return _meta(f)["flag"] or "--" + f.name.replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """One option per CLI-exposed field of ``cls``; unset options keep the dataclass default."""
    docs = field_docs(cls)
    for f in options(cls, "cli"):
        meta, kind = _meta(f), _kind(cls, f)
        default = f.default if f.default is not _MISSING else None
        text = docs.get(f.name, "").replace("%", "%%")
        common: dict[str, Any] = {"dest": f.name, "default": None}
        if kind is bool:
            if meta["invert"]:
                parser.add_argument(_flag(f), action="store_const", const=False, help=text, **common)
            else:
                parser.add_argument(
                    _flag(f), action=argparse.BooleanOptionalAction, help=f"{text} (default: {default})", **common
                )
        elif kind is tuple:
            shown = ",".join(default) if isinstance(default, tuple) else ""
            parser.add_argument(
                _flag(f), type=str, metavar="A,B", help=f"{text} (comma-separated; default: {shown!r})", **common
            )
        else:
            parser.add_argument(
                _flag(f), type=kind, choices=meta["choices"], help=f"{text} (default: {default})", **common
            )


def from_arguments(cls: type, args: argparse.Namespace, **fixed: Any) -> Any:
    """An instance of ``cls`` from parsed options (unset ones keep their defaults) and ``fixed`` values."""
    given: dict[str, Any] = {}
    for f in options(cls, "cli"):
        value = getattr(args, f.name, None)
        if value is None:
            continue
        if _kind(cls, f) is tuple and isinstance(value, str):
            value = tuple(t for t in value.split(",") if t)
        given[f.name] = value
    return cls(**given, **fixed)


def request_model(cls: type, name: str) -> type:
    """A pydantic model of the API-exposed fields of ``cls``, all optional, with the service's bounds.

    Unknown fields are refused; types are strict (no ``"5"`` for 5, no ``true`` for 1).
    """
    from pydantic import ConfigDict, Field, create_model

    docs = field_docs(cls)
    fields: dict[str, Any] = {}
    for f in options(cls, "api"):
        meta, kind = _meta(f), _kind(cls, f)
        py: Any = list[str] if kind is tuple else kind
        if meta["choices"]:
            py = typing.Literal[tuple(sorted(meta["choices"]))]
        le = meta["le"]
        if meta["service_max"] is not None:
            le = meta["service_max"] if le is None else min(le, meta["service_max"])
        bounds = {"gt": meta["gt"], "ge": meta["ge"], "lt": meta["lt"], "le": le} if kind in (int, float) else {}
        fields[f.name] = (
            py | None,
            Field(default=None, description=docs.get(f.name), **{k: v for k, v in bounds.items() if v is not None}),
        )
    return create_model(name, __config__=ConfigDict(extra="forbid", strict=True, allow_inf_nan=False), **fields)


def api_values(obj: Any) -> dict[str, Any]:
    """The API-exposed fields of ``obj`` as JSON values (tuples as lists): what a remote caller sends."""
    out = {}
    for f in options(type(obj), "api"):
        value = getattr(obj, f.name)
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out
