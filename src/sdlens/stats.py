"""The statistics every report shares: per-problem sums and the percentile bootstrap over problems.

Problems are the unit of resampling everywhere (``analyze``, ``compare``, ``eval``, ``metrics``, the experiments
and the probe): rows of a per-problem table are drawn with replacement and each statistic is recomputed from the
resampled rows. A statistic that is a ratio of sums (E per response, per 1k tokens) uses :func:`bootstrap_sums`;
one that is a mean of per-problem values (avg@n, pass@k) uses :func:`bootstrap_ci`. Two runs over the same
problems are resampled *paired* (the same problems drawn for both, :func:`paired_bootstrap_sums`), otherwise each
on its own (:func:`unpaired_bootstrap_sums`). Everything is deterministic for a given seed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

__all__ = [
    "BootstrapError",
    "bootstrap_ci",
    "bootstrap_sums",
    "paired_bootstrap_sums",
    "per_problem_sums",
    "percentile_ci",
    "problem_index",
    "resampled_sums",
    "unpaired_bootstrap_sums",
]


class BootstrapError(ValueError):
    """There is nothing to resample."""


def problem_index(keys: Iterable[str], order: dict[str, int]) -> np.ndarray:
    """Row of each key in the per-problem table; keys not in ``order`` get the next rows (first seen first), and
    ``order`` is updated in place, so batches can be added one after another."""
    rows = [order.setdefault(key, len(order)) for key in keys]
    return np.asarray(rows, dtype=np.int64)


def per_problem_sums(keys: Sequence[str], values: np.ndarray) -> tuple[dict[str, int], np.ndarray]:
    """Sum the rows of ``values`` (one per response) per problem key: ``(order, table)`` with ``table[order[k]]``
    the column sums of problem ``k``'s responses, problems in the order first seen."""
    order: dict[str, int] = {}
    idx = problem_index(keys, order)
    values = np.asarray(values)
    table = np.zeros((len(order), *values.shape[1:]), dtype=values.dtype)
    np.add.at(table, idx, values)
    return order, table


def resampled_sums(table: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Column sums of ``table`` for each bootstrap resample (rows of ``idx``), in chunks to bound memory."""
    out = np.empty((idx.shape[0], table.shape[1]), dtype=float)
    step = max(1, 2_000_000 // max(1, idx.shape[1]))
    for start in range(0, idx.shape[0], step):
        out[start : start + step] = table[idx[start : start + step]].sum(axis=1)
    return out


def _draw(rng: np.random.Generator, n_problems: int, n_boot: int) -> np.ndarray:
    return rng.integers(0, n_problems, size=(n_boot, n_problems))


def bootstrap_sums(table: np.ndarray, *, n_boot: int, seed: int = 0) -> np.ndarray:
    """Column sums of ``n_boot`` resamples of the rows (problems) of ``table``, ``[n_boot, C]``; zeros when the
    table has no rows."""
    if len(table) == 0:
        return np.zeros((n_boot, table.shape[1]))
    return resampled_sums(table, _draw(np.random.default_rng(seed), len(table), n_boot))


def paired_bootstrap_sums(
    table_a: np.ndarray, table_b: np.ndarray, *, n_boot: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Resampled column sums of two tables whose row i is the same problem: each resample draws the same problems
    from both."""
    if len(table_a) != len(table_b):
        raise BootstrapError(f"a paired bootstrap needs the same problems: {len(table_a)} rows vs {len(table_b)}")
    idx = _draw(np.random.default_rng(seed), len(table_a), n_boot)
    return resampled_sums(table_a, idx), resampled_sums(table_b, idx)


def unpaired_bootstrap_sums(
    table_a: np.ndarray, table_b: np.ndarray, *, n_boot: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Resampled column sums of two tables over different problems, each resampled on its own (one generator:
    A's resamples are drawn first, then B's)."""
    rng = np.random.default_rng(seed)
    boot_a = resampled_sums(table_a, _draw(rng, len(table_a), n_boot))
    boot_b = resampled_sums(table_b, _draw(rng, len(table_b), n_boot))
    return boot_a, boot_b


def percentile_ci(values: np.ndarray) -> list[float | None]:
    """95% percentile interval of a bootstrap distribution, ignoring non-finite draws (a resample whose
    denominator is 0); ``[None, None]`` when no draw is finite."""
    v = values[np.isfinite(values)]
    if len(v) == 0:
        return [None, None]
    lo, hi = np.percentile(v, [2.5, 97.5])
    return [float(lo), float(hi)]


def bootstrap_ci(
    scores: np.ndarray, *, resamples: int = 1000, seed: int = 0, level: float = 0.95, max_cells: int = 4_000_000
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap CI of column means of ``scores`` (problems x metrics), resampling problems.

    The same resampled problem sets are used for every column. Deterministic for a given ``seed``.
    """
    scores = np.asarray(scores, dtype=float)
    if scores.ndim == 1:
        scores = scores[:, None]
    p = scores.shape[0]
    if p == 0:
        raise BootstrapError("no problems to bootstrap")
    rng = np.random.default_rng(seed)
    means = np.empty((resamples, scores.shape[1]))
    step = max(1, max_cells // p)
    for start in range(0, resamples, step):
        stop = min(resamples, start + step)
        means[start:stop] = scores[_draw(rng, p, stop - start)].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha], axis=0)
    return lo, hi
