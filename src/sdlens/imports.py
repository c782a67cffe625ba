"""User code named on the command line or in a config as ``package.module:attribute``."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

__all__ = ["import_callable", "lazy_attributes"]


def import_callable(spec: str, what: str) -> Any:
    """The callable ``spec`` names (``package.module:function``); ``ValueError`` in one line otherwise. ``what``
    names the option in the message (``the reward``, ``mix_detector``)."""
    module, sep, name = spec.partition(":")
    if not sep or not module or not name:
        raise ValueError(f"{what} {spec!r}: expected package.module:function")
    try:
        obj = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"cannot import {what} {spec!r}: {e}") from None
    if not callable(obj):
        raise ValueError(f"{what} {spec!r} is not callable")
    return obj


def lazy_attributes(package: str, table: dict[str, str]) -> Callable[[str], Any]:
    """A package's ``__getattr__`` (PEP 562) that imports each name of ``table`` (name -> module) on first use, so
    the package exports names without importing what they need (the CLI's start-up stays light)."""

    def __getattr__(name: str) -> Any:
        if name in table:
            return getattr(importlib.import_module(table[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
