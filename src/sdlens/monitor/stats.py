"""Per-step epistemic statistics of a batch of rollouts (what the callback logs and ``sdlens monitor`` prints).

Two counters, as in ``sdlens analyze``: ``hedges_per_response`` is the paper's number (substring counter,
``paper`` lexicon); every rate, share and split uses whole words (``words`` lexicon by default), so "unlikely" is
not a hedge. Length units are tokens when a tokenizer is given (or the rollouts carry their token counts), else
whitespace words; ``units`` says which.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sdlens.epistemic.count import count_texts
from sdlens.epistemic.lexicon import Lexicon, load_lexicon
from sdlens.epistemic.segment import Scope, scope_text

__all__ = ["Rollout", "step_stats"]


@dataclass
class Rollout:
    """One sampled response: its text, its length in tokens when known, and whether it was correct."""

    text: str
    n_tokens: int | None = None
    correct: bool | None = None


def _lexicon(spec: str | Path | Lexicon) -> Lexicon:
    return spec if isinstance(spec, Lexicon) else load_lexicon(spec)


def _units(texts: list[str], scope: Scope, tokenizer: Any, n_words: np.ndarray, known: list[int | None]) -> np.ndarray:
    if scope is Scope.full and all(n is not None for n in known):
        return np.asarray(known, dtype=np.int64)
    if tokenizer is None:
        return n_words
    scoped = [scope_text(t, scope) for t in texts]
    ids = tokenizer(scoped, add_special_tokens=False)["input_ids"]
    return np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))


def _rates(totals: np.ndarray, units: np.ndarray, sel: np.ndarray | None = None) -> dict[str, float | None]:
    if sel is not None:
        totals, units = totals[sel], units[sel]
    n = len(totals)
    u = int(units.sum())
    return {
        "hedges_per_1k_tokens": 1000.0 * float(totals.sum()) / u if u else None,
        "hedges_per_response": float(totals.mean()) if n else None,
        "share_with_any": float((totals > 0).mean()) if n else None,
        "mean_length": float(units.mean()) if n else None,
        "n_responses": n,
    }


def step_stats(
    rollouts: Sequence[Rollout],
    *,
    tokenizer: Any = None,
    lexicon: str | Path | Lexicon = "words",
    paper_lexicon: str | Path | Lexicon = "paper",
) -> dict[str, Any]:
    """Flat JSON-ready statistics of one step's rollouts (``None`` where a value has no data).

    Keys: ``n_responses``, ``hedges_per_response`` (paper counter), ``hedges_per_response_words``,
    ``hedges_per_1k_tokens``, ``share_with_any``, ``mean_length``, ``accuracy``, ``per_word/<word>`` (mean per
    response), then ``thinking/...``, ``answer/...``, ``correct/...``, ``incorrect/...`` each with
    ``hedges_per_1k_tokens``, ``hedges_per_response``, ``share_with_any``, ``mean_length``, ``n_responses``;
    ``units`` (whole responses) and ``scope_units`` (thinking / answer parts) are ``tokens`` or ``words``.
    """
    lex, paper = _lexicon(lexicon), _lexicon(paper_lexicon)
    texts = [r.text for r in rollouts]
    known = [r.n_tokens for r in rollouts]
    out: dict[str, Any] = {"n_responses": len(texts)}
    has_tokens = tokenizer is not None or (bool(known) and all(n is not None for n in known))
    out["units"] = "tokens" if has_tokens else "words"
    out["scope_units"] = "tokens" if tokenizer is not None else "words"  # of the thinking/answer parts
    if not texts:
        return out
    full = count_texts(texts, lex, Scope.full)
    units = _units(texts, Scope.full, tokenizer, full.n_words, known)
    totals = full.totals
    base = _rates(totals, units)
    out["hedges_per_response"] = float(count_texts(texts, paper, Scope.full).totals.mean())
    out["hedges_per_response_words"] = base["hedges_per_response"]
    for key in ("hedges_per_1k_tokens", "share_with_any", "mean_length"):
        out[key] = base[key]
    for word, column in zip(lex.words, full.counts.T, strict=True):
        out[f"per_word/{word}"] = float(column.mean())
    for scope in (Scope.thinking, Scope.answer):
        arrays = count_texts(texts, lex, scope)
        scoped_units = _units(texts, scope, tokenizer, arrays.n_words, known)
        for key, value in _rates(arrays.totals, scoped_units).items():
            out[f"{scope.value}/{key}"] = value
    correct = np.array([r.correct is True for r in rollouts])
    incorrect = np.array([r.correct is False for r in rollouts])
    graded = int(correct.sum() + incorrect.sum())
    out["accuracy"] = float(correct.sum()) / graded if graded else None
    for name, sel in (("correct", correct), ("incorrect", incorrect)):
        for key, value in _rates(totals, units, sel).items():
            out[f"{name}/{key}"] = value
    return out
