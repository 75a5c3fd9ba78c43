"""Typed configs: dataclasses that are saved beside every result they produced and read back.

A config is a plain (frozen) dataclass of JSON-friendly fields (numbers, strings, bools, Paths,
Fractions, tuples, nested config dataclasses). ``to_dict`` / ``from_dict`` round-trip exactly, and
``config_hash`` tells whether a stage's result is stale for a new config.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from fractions import Fraction
from pathlib import Path
from typing import Any, TypeVar

C = TypeVar("C")


def to_dict(cfg: Any) -> dict[str, Any]:
    """Dataclass -> JSON-safe dict (Paths and Fractions become strings, tuples lists)."""

    def enc(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: enc(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, Fraction):
            return f"{v.numerator}/{v.denominator}"  # "25/1": a rate reads as a rate
        if isinstance(v, Path):
            return str(v)
        if isinstance(v, (list, tuple)):
            return [enc(x) for x in v]
        return v

    return enc(cfg)


def from_dict(cls: type[C], data: dict[str, Any]) -> C:
    """JSON dict -> dataclass ``cls``; unknown keys are an error, missing keys take the defaults."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown field(s) {sorted(unknown)}")
    return cls(**{k: _decode(hints[k], v) for k, v in data.items()})


def _decode(tp: Any, v: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return None if v is None else _decode(args[0], v)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, v)
    if tp is Path:
        return Path(v)
    if tp is Fraction:
        return Fraction(v)
    if origin is tuple:
        args = typing.get_args(tp)
        item = args[0] if len(args) == 2 and args[1] is Ellipsis else None
        return tuple(_decode(item or args[i], x) for i, x in enumerate(v))
    return v


def config_hash(cfg: Any) -> str:
    """Stable short hash of a config's content (sorted JSON)."""
    blob = json.dumps(to_dict(cfg), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
