"""Config dataclass fields documented once: a field's ``help`` metadata is its documentation, printed by the CLI's
``--help`` (:mod:`sdlens.cli.options`) and by ``--help-config``. Light on purpose: the CLI imports the config
modules that use it to build its help, so nothing heavy may load here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, field, fields
from typing import Any, TypeVar

__all__ = ["config_from", "documented", "field_default", "field_help"]

C = TypeVar("C")


def documented(default: Any = MISSING, help: str = "", *, default_factory: Any = MISSING) -> Any:
    """A dataclass field whose ``help`` metadata documents it."""
    if not help:
        raise ValueError("a documented field needs its help text")
    return field(default=default, default_factory=default_factory, metadata={"help": help})


def field_help(cls: type, name: str) -> str:
    """The help text of dataclass ``cls``'s field ``name`` (a ``KeyError`` when the field has none)."""
    for f in fields(cls):
        if f.name == name:
            return f.metadata["help"]
    raise KeyError(f"{cls.__name__} has no field {name!r}")


def field_default(cls: type, name: str) -> Any:
    """The default of dataclass ``cls``'s field ``name`` (``MISSING`` when it has none or a factory)."""
    for f in fields(cls):
        if f.name == name:
            return f.default
    raise KeyError(f"{cls.__name__} has no field {name!r}")


def config_from(cls: type[C], params: Mapping[str, Any], **given: Any) -> C:
    """``cls`` (a config dataclass) from a command's parameter values (``params``, e.g. the command's ``locals()``):
    each field not in ``given`` takes the parameter of its name, where there is one (else its default); ``given``
    holds the fields whose option is named otherwise or whose value the command converts."""
    names = [f.name for f in fields(cls) if f.init]
    return cls(**{n: params[n] for n in names if n in params and n not in given}, **given)
