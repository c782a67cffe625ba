"""The suppression detector on simulated series: flat stays ok, collapses are caught within the documented delay,
false alarms on noisy flat runs stay under the documented bound, and the Mann-Kendall test is right."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from sdlens.monitor.detector import Detector, DetectorConfig, mann_kendall_decrease
from sdlens.monitor.simulate import SimConfig, detection_delays, false_alarm_rate, simulate_series

# The bounds docs/monitor.md states (measured there with 1000 seeds; these tests use fewer).
FALSE_ALARM_BOUND = 0.02  # suppressing in a flat 100-step run, step noise 0.15
MAX_DELAY_40 = 20  # steps from the start of a 40-step collapse to suppressing, step noise 0.15


def _s_statistic(x) -> int:
    return sum(int(np.sign(x[j] - x[i])) for i, j in itertools.combinations(range(len(x)), 2))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mann_kendall_matches_the_exact_permutation_distribution(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=7) - 0.3 * np.arange(7)
    tau, p = mann_kendall_decrease(x)
    s = _s_statistic(x)
    assert tau == pytest.approx(s / 21)
    # exact one-sided p under no trend: the share of orderings with S at most the observed one
    exact = np.mean([_s_statistic(perm) <= s for perm in itertools.permutations(x)])
    assert p == pytest.approx(exact, abs=0.02)


def test_mann_kendall_direction_and_ties():
    assert mann_kendall_decrease([5, 4, 3, 2, 1, 0])[1] < 0.01
    assert mann_kendall_decrease([0, 1, 2, 3, 4, 5])[1] > 0.99
    tau, p = mann_kendall_decrease([1.0] * 10)
    assert tau == 0 and p == 1.0
    assert mann_kendall_decrease([2.0, 1.0]) == (0.0, 1.0)  # too short to test


def test_flat_series_is_ok():
    det = Detector()
    for step in range(60):
        v = det.update(8.0 + 0.1 * (step % 3), 2000.0 - (step % 2), step)
    assert v.state == "ok" and det.first_fired == {}
    assert v.hedge_change == pytest.approx(0.0, abs=0.02)


def test_sudden_collapse_is_confirmed_after_the_configured_steps():
    cfg = DetectorConfig(baseline_steps=5, recent=2, confirm=3)
    det = Detector(cfg)
    states = []
    for step in range(20):
        hedge = 10.0 + 0.01 * (step % 2) if step < 8 else 2.0 + 0.01 * (step % 2)
        states.append(det.update(hedge, 1000.0 + step % 3, step).state)
    first_warn, first_supp = states.index("warning"), states.index("suppressing")
    assert 8 <= first_warn < first_supp == first_warn + cfg.confirm - 1
    assert det.first_fired == {"warning": first_warn, "suppressing": first_supp}
    assert det.last.hedge_change == pytest.approx(-0.8, abs=0.01) and det.last.changed is False


def test_length_falling_alone_is_a_warning():
    det = Detector(DetectorConfig(baseline_steps=5))
    for step in range(30):
        v = det.update(8.0 + 0.1 * (step % 3), 2000.0 * (0.97**step), step)
    assert v.state == "warning" and "shorter" in v.reason and "suppressing" not in det.first_fired


def test_steps_without_rollouts_are_skipped():
    det = Detector()
    assert det.update(None, 100.0, 1).reason == "no data yet"
    assert det.update(float("nan"), 100.0, 2).state == "ok" and det.hedge == []


def test_simulated_collapse_is_caught_within_the_documented_delay():
    cfg = SimConfig(steps=80, noise=0.15, duration=40)
    delays = detection_delays(cfg, range(40))
    assert all(d is not None for d in delays)
    assert max(delays) <= MAX_DELAY_40
    assert min(delays) > 0  # it does not fire before the collapse starts


def test_false_alarms_on_noisy_flat_runs_stay_under_the_bound():
    cfg = SimConfig(steps=100, noise=0.15)
    assert false_alarm_rate(cfg, range(150)) <= FALSE_ALARM_BOUND
    # and the test has teeth: with the effect-size gate and confirmation removed, the same runs do raise alarms
    loose = DetectorConfig(min_drop=0.0, confirm=1, alpha=0.2, min_length_drop=0.0)
    assert false_alarm_rate(cfg, range(150), loose) > 5 * FALSE_ALARM_BOUND


def test_simulated_series_have_the_configured_shape():
    cfg = SimConfig(steps=60, noise=0.0, length_noise=0.0, onset=10, duration=20, floor=0.05, length_floor=0.6)
    hedge, length = simulate_series("collapse", cfg, 0)
    assert hedge[:11] == pytest.approx([8.0] * 11) and hedge[30:] == pytest.approx([0.4] * 30)
    assert length[30:] == pytest.approx([1200.0] * 30)
    with pytest.raises(ValueError, match="flat or collapse"):
        simulate_series("spike", cfg, 0)
