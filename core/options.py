"""Config fields that are also command-line options, declared once on the config dataclass.

``option(default, help, choices=...)`` marks a field; ``add_options`` turns a config class's marked fields into
argparse arguments (type, default and choices from the dataclass and the code's own tables), and ``from_args``
reads them back into a config. The CLI never retypes a default or a list of choices, and the studio's boxes
read the same tables.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

C = TypeVar("C")
_KEY = "option"


@dataclass(frozen=True)
class Option:
    help: str
    choices: Mapping[str, str] | tuple[Any, ...] | None = None  # a mapping's values describe its keys
    flag: str | None = None                                    # default: --field-name
    metavar: str | None = None


def option(default: Any, help: str, *, choices: Mapping[str, str] | tuple[Any, ...] | None = None,
           flag: str | None = None, metavar: str | None = None) -> Any:
    """A dataclass field that is also a command-line option."""
    return field(default=default, metadata={_KEY: Option(help, choices, flag, metavar)})


def options(cls: type) -> list[tuple[dataclasses.Field, Option]]:
    """``cls``'s fields declared with ``option``, in order."""
    return [(f, f.metadata[_KEY]) for f in dataclasses.fields(cls) if _KEY in f.metadata]


def add_options(parser: argparse.ArgumentParser, cls: type, defaults: Any = None) -> None:
    """One argument per option field of ``cls``; defaults from ``defaults`` (a ``cls`` instance) or the class."""
    hints = typing.get_type_hints(cls)
    for f, opt in options(cls):
        default = getattr(defaults, f.name) if defaults is not None else f.default
        flag = opt.flag or "--" + f.name.replace("_", "-")
        kind = _base(hints[f.name])
        text = opt.help.replace("%", "%%")
        if kind is bool:  # a switch that turns the default over
            if default:
                flag = opt.flag or "--no-" + f.name.replace("_", "-")
            parser.add_argument(flag, dest=f.name, action="store_false" if default else "store_true", help=text)
            continue
        if isinstance(opt.choices, Mapping):
            text += "; " + "; ".join(f"{k}: {v}" for k, v in opt.choices.items()).replace("%", "%%")
        if default is not None:
            text += f" (default: {default})"
        parser.add_argument(flag, dest=f.name, type=kind, default=default, metavar=opt.metavar,
                            choices=list(opt.choices) if opt.choices is not None else None, help=text)


def from_args(cls: type[C], args: argparse.Namespace, base: C | None = None) -> C:
    """``base`` (or ``cls()``) with its option fields taken from parsed ``args``."""
    values = {f.name: getattr(args, f.name) for f, _ in options(cls)}
    return dataclasses.replace(base, **values) if base is not None else cls(**values)


def _base(tp: Any) -> type:
    """The argument's type: ``X`` of ``X | None``."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    return tp
