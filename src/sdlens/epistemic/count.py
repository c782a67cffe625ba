"""Count lexicon hits per response.

``count_text`` is the readable reference implementation of every rule; ``count_texts`` is the batch entry point
used everywhere else, which hands the work to the compiled kernel (``sdlens.epistemic._fastcount``) when it is
built and falls back to the reference otherwise. The two must agree exactly; tests check it on random text.
``SDLENS_PURE_PYTHON=1`` in the environment turns the kernel off (as on a machine without a C compiler).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sdlens.epistemic.kernel import compiled_kernel
from sdlens.epistemic.lexicon import Lexicon
from sdlens.epistemic.segment import Scope, scope_text

N_BINS = 10  # position profile: hedges per tenth of the (scoped) response


@dataclass
class CountArrays:
    """Per-response results for a batch of N responses and a lexicon of W entries."""

    counts: np.ndarray  # [N, W] hits per entry
    n_chars: np.ndarray  # [N] characters in the scoped text (after lower-casing, for substring mode)
    n_words: np.ndarray  # [N] whitespace-separated words in the scoped text (``len(text.split())``)
    bins: np.ndarray  # [N, N_BINS] hits by relative position of the match start

    @property
    def totals(self) -> np.ndarray:
        return self.counts.sum(axis=1)


def count_text(text: str, lexicon: Lexicon, scope: Scope | str = Scope.full) -> tuple[list[int], int, int, list[int]]:
    """Reference: ``(counts per entry, n_chars, n_words, hits per tenth)`` for one response."""
    scoped = scope_text(text, scope)
    n_words = len(scoped.split())
    bins = [0] * N_BINS
    counts = []
    if lexicon.mode == "substring":
        hay = scoped.lower()
        length = len(hay)
        for word in lexicon.words:
            c, pos = 0, hay.find(word)
            while pos >= 0:
                c += 1
                bins[pos * N_BINS // length] += 1
                pos = hay.find(word, pos + len(word))
            counts.append(c)
        return counts, length, n_words, bins
    length = len(scoped)
    for pattern in lexicon.patterns or ():
        c = 0
        for m in pattern.finditer(scoped):
            c += 1
            bins[m.start() * N_BINS // length] += 1
        counts.append(c)
    return counts, length, n_words, bins


def count_texts_reference(texts: Sequence[str], lexicon: Lexicon, scope: Scope | str = Scope.full) -> CountArrays:
    n, w = len(texts), len(lexicon.words)
    counts = np.zeros((n, w), dtype=np.int64)
    n_chars = np.zeros(n, dtype=np.int64)
    n_words = np.zeros(n, dtype=np.int64)
    bins = np.zeros((n, N_BINS), dtype=np.int64)
    for i, t in enumerate(texts):
        c, nc, nw, b = count_text(t, lexicon, scope)
        counts[i] = c
        n_chars[i] = nc
        n_words[i] = nw
        bins[i] = b
    return CountArrays(counts, n_chars, n_words, bins)


def count_texts(
    texts: Sequence[str], lexicon: Lexicon, scope: Scope | str = Scope.full, *, backend: str = "auto"
) -> CountArrays:
    """Count a batch of responses. ``backend``: ``auto`` (kernel if built), ``kernel`` or ``reference``."""
    scope = Scope(scope)
    kernel = compiled_kernel() if backend in ("auto", "kernel") else None
    if backend == "kernel" and kernel is None:
        raise RuntimeError(
            "the compiled counting kernel is not built or is turned off by SDLENS_PURE_PYTHON "
            "(reinstall sdlens with a C compiler)"
        )
    if kernel is None:
        return count_texts_reference(texts, lexicon, scope)
    return kernel_count_texts(kernel, texts, lexicon, scope)


def kernel_count_texts(kernel, texts: Sequence[str], lexicon: Lexicon, scope: Scope) -> CountArrays:
    """Run the compiled kernel; responses it leaves out (a lone surrogate, or any response when a lexicon word is
    outside printable ASCII) go to the reference."""
    texts = list(texts)
    out = kernel.count_strings(texts, lexicon.words, lexicon.mode, scope.value)
    arrays = _arrays_from_kernel(out, len(texts), len(lexicon.words))
    fallback = np.asarray(out["fallback"], dtype=np.int64) if len(out["fallback"]) else np.zeros(0, np.int64)
    for i in fallback:
        c, nc, nw, b = count_text(texts[i], lexicon, scope)
        arrays.counts[i] = c
        arrays.n_chars[i] = nc
        arrays.n_words[i] = nw
        arrays.bins[i] = b
    return arrays


def _arrays_from_kernel(out: dict, n: int, w: int) -> CountArrays:
    stats = np.frombuffer(out["stats"], dtype=np.int64).reshape(n, w + 2 + N_BINS).copy()
    return CountArrays(
        counts=stats[:, :w],
        n_chars=stats[:, w],
        n_words=stats[:, w + 1],
        bins=stats[:, w + 2 :],
    )
