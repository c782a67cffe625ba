"""User code named on the command line or in a config as ``package.module:attribute``."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["import_callable"]


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
