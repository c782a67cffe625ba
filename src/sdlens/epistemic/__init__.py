"""Epistemic-verbalization measurement: lexicons, think/answer segmentation, counting and statistics."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sdlens.epistemic.segment import Scope, scope_text, split_thinking
from sdlens.imports import lazy_attributes

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


__getattr__ = lazy_attributes(__name__, _LAZY)
