"""Aggregate per-response counts into the statistics `sdlens analyze` reports.

An ``Accumulator`` keeps, per problem, the sums needed for every statistic and for the bootstrap over problems
(totals, responses, units, responses with any hedge, per-word totals), plus the per-response totals for the
median and p90. Memory grows with the number of responses (a few integers each), never with text size.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sdlens.epistemic.count import N_BINS, CountArrays


class _Growable:
    def __init__(self, width: int, dtype: Any = np.int64):
        self.data = np.zeros((64, width), dtype=dtype)
        self.n = 0

    def ensure(self, n: int) -> None:
        if n > len(self.data):
            bigger = np.zeros((max(n, 2 * len(self.data)), self.data.shape[1]), dtype=self.data.dtype)
            bigger[: self.n] = self.data[: self.n]
            self.data = bigger
        self.n = max(self.n, n)

    def view(self) -> np.ndarray:
        return self.data[: self.n]


# Per-problem columns: totals, responses, units, chars, responses with any hedge, then one per word.
P_TOTAL, P_RESP, P_UNITS, P_CHARS, P_ANY, P_WORDS = range(6)


@dataclass
class Accumulator:
    words: tuple[str, ...]
    problems: dict[str, int] = field(default_factory=dict)
    _per_problem: _Growable | None = None
    _totals: list[np.ndarray] = field(default_factory=list)
    bins: np.ndarray | None = None

    def __post_init__(self) -> None:
        self._per_problem = _Growable(P_WORDS + len(self.words))
        self.bins = np.zeros(N_BINS, dtype=np.int64)

    def touch(self, problem_keys: Iterable[str]) -> None:
        """Register problems that may have no responses (the paper's script counts them as problems)."""
        for key in problem_keys:
            if key not in self.problems:
                self.problems[key] = len(self.problems)
        self._per_problem.ensure(len(self.problems))

    def add(self, problem_keys: list[str] | np.ndarray, arrays: CountArrays, units: np.ndarray) -> None:
        """Add a batch: ``problem_keys[i]`` owns response i; ``units`` are its tokens or words."""
        if len(problem_keys) == 0:
            return
        idx = np.empty(len(problem_keys), dtype=np.int64)
        for i, key in enumerate(problem_keys):
            j = self.problems.get(key)
            if j is None:
                j = self.problems[key] = len(self.problems)
            idx[i] = j
        pp = self._per_problem
        pp.ensure(len(self.problems))
        totals = arrays.totals
        data = pp.data
        np.add.at(data[:, P_TOTAL], idx, totals)
        np.add.at(data[:, P_RESP], idx, 1)
        np.add.at(data[:, P_UNITS], idx, units)
        np.add.at(data[:, P_CHARS], idx, arrays.n_chars)
        np.add.at(data[:, P_ANY], idx, (totals > 0).astype(np.int64))
        np.add.at(data[:, P_WORDS:], idx, arrays.counts)
        self._totals.append(totals.copy())
        self.bins += arrays.bins.sum(axis=0)

    def per_problem(self) -> np.ndarray:
        return self._per_problem.view()

    def response_totals(self) -> np.ndarray:
        return np.concatenate(self._totals) if self._totals else np.zeros(0, dtype=np.int64)

    def summary(self) -> dict[str, Any]:
        return summarize(self.per_problem(), self.response_totals(), self.bins, self.words)


def summarize(pp: np.ndarray, totals: np.ndarray, bins: np.ndarray, words: tuple[str, ...]) -> dict[str, Any]:
    n_resp = int(pp[:, P_RESP].sum()) if len(pp) else 0
    total = int(pp[:, P_TOTAL].sum()) if len(pp) else 0
    units = int(pp[:, P_UNITS].sum()) if len(pp) else 0
    word_totals = pp[:, P_WORDS:].sum(axis=0) if len(pp) else np.zeros(len(words), dtype=np.int64)
    has_resp = pp[:, P_RESP] > 0 if len(pp) else np.zeros(0, dtype=bool)
    per_problem_mean = pp[has_resp, P_TOTAL] / pp[has_resp, P_RESP] if len(pp) else np.zeros(0)
    bin_total = int(bins.sum())
    return {
        "n_problems": len(pp),
        "n_responses": n_resp,
        "total": total,
        "mean_per_response": total / n_resp if n_resp else None,
        # the section-3 report averages per-problem means; equal to the above when every problem has n samples
        "mean_per_response_macro": float(per_problem_mean.mean()) if len(per_problem_mean) else None,
        "per_1k_tokens": 1000 * total / units if units else None,
        "share_with_any": int(pp[:, P_ANY].sum()) / n_resp if n_resp else None,
        "median_per_response": float(np.median(totals)) if len(totals) else None,
        "p90_per_response": float(np.percentile(totals, 90)) if len(totals) else None,
        "mean_length": units / n_resp if n_resp else None,
        "mean_chars": int(pp[:, P_CHARS].sum()) / n_resp if n_resp else None,
        "per_word": {
            w: {"total": int(t), "mean_per_response": int(t) / n_resp if n_resp else None}
            for w, t in zip(words, word_totals, strict=True)
        },
        "position_profile": [int(b) / bin_total if bin_total else None for b in bins],
    }
