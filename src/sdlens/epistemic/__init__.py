"""Epistemic-verbalization measurement: lexicons, think/answer segmentation, counting and statistics."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from sdlens.epistemic.segment import Scope, scope_text, split_thinking

if TYPE_CHECKING:
    from sdlens.epistemic.count import CountArrays, count_texts
    from sdlens.epistemic.lexicon import Lexicon, load_lexicon

__all__ = ["CountArrays", "Lexicon", "Scope", "count_texts", "load_lexicon", "scope_text", "split_thinking"]

# loaded on first use (PEP 562): the CLI imports Scope from here and must not pay for numpy at start-up
_LAZY = {
    "CountArrays": "sdlens.epistemic.count",
    "count_texts": "sdlens.epistemic.count",
    "Lexicon": "sdlens.epistemic.lexicon",
    "load_lexicon": "sdlens.epistemic.lexicon",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
