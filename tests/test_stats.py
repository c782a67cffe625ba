"""sdlens.stats: the one per-problem aggregation and bootstrap every report uses."""

from __future__ import annotations

import numpy as np
import pytest

from sdlens.stats import (
    BootstrapError,
    bootstrap_ci,
    bootstrap_sums,
    paired_bootstrap_sums,
    per_problem_sums,
    percentile_ci,
    problem_index,
    unpaired_bootstrap_sums,
)


def test_per_problem_sums_groups_rows_in_first_seen_order():
    keys = ["b", "a", "b", "c", "a", "b"]
    values = np.array([[1, 10], [2, 20], [3, 30], [4, 40], [5, 50], [6, 60]])
    order, table = per_problem_sums(keys, values)
    assert order == {"b": 0, "a": 1, "c": 2}
    assert table.tolist() == [[10, 100], [7, 70], [4, 40]]


def test_problem_index_extends_an_existing_order():
    order = {"x": 0}
    assert problem_index(["y", "x", "z", "y"], order).tolist() == [1, 0, 2, 1]
    assert order == {"x": 0, "y": 1, "z": 2}


def test_bootstrap_sums_resample_rows_with_replacement():
    table = np.arange(12, dtype=float).reshape(4, 3)
    got = bootstrap_sums(table, n_boot=50, seed=3)
    idx = np.random.default_rng(3).integers(0, 4, size=(50, 4))
    assert np.array_equal(got, table[idx].sum(axis=1))
    # every resample has four problems: its first column sums four values of 0, 3, 6, 9
    assert set(np.unique(got[:, 0] % 3)) == {0.0}
    assert bootstrap_sums(np.zeros((0, 3)), n_boot=5).shape == (5, 3)


def test_paired_resamples_draw_the_same_problems_for_both_runs():
    a = np.arange(20, dtype=float).reshape(10, 2)
    b = a * 2
    boot_a, boot_b = paired_bootstrap_sums(a, b, n_boot=100, seed=0)
    assert np.array_equal(boot_b, 2 * boot_a)
    un_a, un_b = unpaired_bootstrap_sums(a, b, n_boot=100, seed=0)
    assert np.array_equal(un_a, boot_a)  # A's resamples come first from the same generator
    assert not np.array_equal(un_b, 2 * un_a)
    with pytest.raises(BootstrapError, match="same problems"):
        paired_bootstrap_sums(a, b[:5], n_boot=10)


def test_percentile_ci_skips_undefined_draws():
    values = np.array([np.nan, np.inf, *range(101)], dtype=float)
    assert percentile_ci(values) == [2.5, 97.5]
    assert percentile_ci(np.array([np.nan, np.inf])) == [None, None]


def test_bootstrap_ci_of_column_means():
    scores = np.tile([[0.0, 1.0], [1.0, 1.0]], (20, 1))
    lo, hi = bootstrap_ci(scores, resamples=200, seed=0)
    assert lo[1] == hi[1] == 1.0
    assert 0.3 < lo[0] < 0.5 < hi[0] < 0.7
    with pytest.raises(BootstrapError):
        bootstrap_ci(np.zeros((0, 2)))
