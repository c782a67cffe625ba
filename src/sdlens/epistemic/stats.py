"""Aggregate per-response counts into the statistics `sdlens analyze` reports (the bootstrap is :mod:`sdlens.stats`).

An ``Accumulator`` keeps, per problem, the sums needed for every statistic and for the bootstrap over problems
(totals, responses, units, responses with any hedge, per-word totals), plus the per-response totals for the
median and p90. Memory grows with the number of responses (a few integers each), never with text size.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sdlens.epistemic.count import N_BINS, CountArrays
from sdlens.stats import problem_index


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


@dataclass(frozen=True)
class Ratio:
    """A statistic of a behaviour measure, from the measure's per-problem column sums (``MeasureSpec``).

    ``kind="sum"``: ``scale * sum(num) / sum(den)`` over problems (a ratio of sums, as for E).
    ``kind="any"``: among problems with ``den > 0``, the share that also have ``num > 0`` (oat-zero's prompt-level
    "any of k samples" statistics)."""

    name: str
    num: str
    den: str
    scale: float = 1.0
    kind: str = "sum"


@dataclass(frozen=True)
class MeasureSpec:
    """Columns a behaviour measure adds per response (summed per problem) and the statistics made of them."""

    name: str
    columns: tuple[str, ...]
    ratios: tuple[Ratio, ...]


def ratio_parts(specs: Sequence[MeasureSpec], table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-problem numerator and denominator of every ratio (``[P, R]`` each); summing them over any set of problems
    (all, a bootstrap resample) and dividing gives the statistic, so analyze and compare share one rule."""
    nums, dens = [], []
    offset = 0
    for spec in specs:
        col = {c: offset + i for i, c in enumerate(spec.columns)}
        for r in spec.ratios:
            num, den = table[:, col[r.num]], table[:, col[r.den]]
            if r.kind == "any":
                has = den > 0
                nums.append((has & (num > 0)).astype(float))
                dens.append(has.astype(float))
            else:
                nums.append(r.scale * num)
                dens.append(den.astype(float))
        offset += len(spec.columns)
    if not nums:
        return np.zeros((len(table), 0)), np.zeros((len(table), 0))
    return np.stack(nums, axis=1), np.stack(dens, axis=1)


def ratio_names(specs: Sequence[MeasureSpec]) -> list[tuple[str, str]]:
    return [(spec.name, r.name) for spec in specs for r in spec.ratios]


@dataclass
class Accumulator:
    words: tuple[str, ...]
    problems: dict[str, int] = field(default_factory=dict)
    _per_problem: _Growable | None = None
    _totals: list[np.ndarray] = field(default_factory=list)
    bins: np.ndarray | None = None
    measures: tuple[MeasureSpec, ...] = ()
    """Behaviour measures whose per-response columns are summed per problem beside the hedge counts."""
    _measure_table: _Growable | None = None

    def __post_init__(self) -> None:
        self._per_problem = _Growable(P_WORDS + len(self.words))
        self.bins = np.zeros(N_BINS, dtype=np.int64)
        self._measure_table = _Growable(sum(len(m.columns) for m in self.measures), dtype=np.float64)

    def touch(self, problem_keys: Iterable[str]) -> None:
        """Register problems that may have no responses (the paper's script counts them as problems)."""
        for key in problem_keys:
            if key not in self.problems:
                self.problems[key] = len(self.problems)
        self._per_problem.ensure(len(self.problems))
        self._measure_table.ensure(len(self.problems))

    def add(
        self,
        problem_keys: list[str] | np.ndarray,
        arrays: CountArrays,
        units: np.ndarray,
        measure_columns: np.ndarray | None = None,
        *,
        repeats: np.ndarray | None = None,
    ) -> None:
        """Add a batch: ``problem_keys[i]`` owns response i (with ``repeats``: the next ``repeats[i]`` responses, each
        at least one); ``units`` are its tokens or words; ``measure_columns[i]`` its behaviour-measure columns (all
        measures' columns side by side)."""
        if len(problem_keys) == 0:
            return
        idx = problem_index(problem_keys, self.problems)
        if repeats is not None:
            idx = np.repeat(idx, repeats)
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
        if self.measures:
            if measure_columns is None:
                raise ValueError("this accumulator has behaviour measures: pass their columns")
            self._measure_table.ensure(len(self.problems))
            np.add.at(self._measure_table.data, idx, measure_columns)

    def per_problem(self) -> np.ndarray:
        return self._per_problem.view()

    def measure_table(self) -> np.ndarray:
        """Per-problem sums of the behaviour-measure columns, rows in the order of ``problems``."""
        self._measure_table.ensure(len(self.problems))
        return self._measure_table.view()

    def response_totals(self) -> np.ndarray:
        return np.concatenate(self._totals) if self._totals else np.zeros(0, dtype=np.int64)

    def summary(self) -> dict[str, Any]:
        out = summarize(self.per_problem(), self.response_totals(), self.bins, self.words)
        if self.measures:
            out["measures"] = summarize_measures(self.measures, self.measure_table())
        return out


def summarize_measures(specs: Sequence[MeasureSpec], table: np.ndarray) -> dict[str, Any]:
    """Each measure's statistics (None where the denominator is 0) and its column totals."""
    num, den = ratio_parts(specs, table)
    num_sum, den_sum = num.sum(axis=0), den.sum(axis=0)
    out: dict[str, Any] = {}
    offset = 0
    j = 0
    for spec in specs:
        totals = table[:, offset : offset + len(spec.columns)].sum(axis=0)
        block: dict[str, Any] = {}
        for r in spec.ratios:
            block[r.name] = float(num_sum[j] / den_sum[j]) if den_sum[j] else None
            j += 1
        block["totals"] = {c: _plain(t) for c, t in zip(spec.columns, totals, strict=True)}
        out[spec.name] = block
        offset += len(spec.columns)
    return out


def _plain(x: float) -> int | float:
    return int(x) if float(x).is_integer() else float(x)


def median_and_p90(counts: np.ndarray) -> tuple[float, float]:
    """``(np.median(counts), np.percentile(counts, 90))`` of integer counts, to the last bit (numpy's default linear
    interpolation; tests hold the two to numpy's). Written out because numpy's quantiles call ``np.unique``, whose
    first call imports ``numpy.ma``: ~8 ms, 6% of ``sdlens analyze FILE --json`` as a process on a 150 MB file
    (docs/benchmarks.md)."""
    ordered = np.sort(counts)
    n = len(ordered)
    median = (float(ordered[(n - 1) // 2]) + float(ordered[n // 2])) / 2
    virtual = (n - 1) * 0.9  # numpy's virtual index for the linear method, (n - 1) * q
    below = int(virtual)
    above = min(below + 1, n - 1)
    gamma = virtual - below
    low, high = int(ordered[below]), int(ordered[above])
    step = high - low
    # numpy's lerp: from the nearer end, so that gamma 1 gives the upper value exactly
    p90 = high - step * (1 - gamma) if gamma >= 0.5 else low + step * gamma
    return median, float(p90)


def summarize(pp: np.ndarray, totals: np.ndarray, bins: np.ndarray, words: tuple[str, ...]) -> dict[str, Any]:
    n_resp = int(pp[:, P_RESP].sum()) if len(pp) else 0
    total = int(pp[:, P_TOTAL].sum()) if len(pp) else 0
    units = int(pp[:, P_UNITS].sum()) if len(pp) else 0
    word_totals = pp[:, P_WORDS:].sum(axis=0) if len(pp) else np.zeros(len(words), dtype=np.int64)
    has_resp = pp[:, P_RESP] > 0 if len(pp) else np.zeros(0, dtype=bool)
    per_problem_mean = pp[has_resp, P_TOTAL] / pp[has_resp, P_RESP] if len(pp) else np.zeros(0)
    bin_total = int(bins.sum())
    median, p90 = median_and_p90(totals) if len(totals) else (None, None)
    return {
        "n_problems": len(pp),
        "n_responses": n_resp,
        "total": total,
        "mean_per_response": total / n_resp if n_resp else None,
        # the section-3 report averages per-problem means; equal to the above when every problem has n samples
        "mean_per_response_macro": float(per_problem_mean.mean()) if len(per_problem_mean) else None,
        "per_1k_tokens": 1000 * total / units if units else None,
        "share_with_any": int(pp[:, P_ANY].sum()) / n_resp if n_resp else None,
        "median_per_response": median,
        "p90_per_response": p90,
        "mean_length": units / n_resp if n_resp else None,
        "mean_chars": int(pp[:, P_CHARS].sum()) / n_resp if n_resp else None,
        "per_word": {
            w: {"total": int(t), "mean_per_response": int(t) / n_resp if n_resp else None}
            for w, t in zip(words, word_totals, strict=True)
        },
        "position_profile": [int(b) / bin_total if bin_total else None for b in bins],
    }
