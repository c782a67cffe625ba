"""Epistemic-verbalization measurement: lexicons, think/answer segmentation, counting and statistics."""

from sdlens.epistemic.count import CountArrays, count_texts
from sdlens.epistemic.lexicon import Lexicon, load_lexicon
from sdlens.epistemic.segment import Scope, scope_text, split_thinking

__all__ = ["CountArrays", "Lexicon", "Scope", "count_texts", "load_lexicon", "scope_text", "split_thinking"]
