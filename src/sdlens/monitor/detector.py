"""The suppression detector: is hedging (and length) falling away from where the run started?

Per logging step it gets two numbers: hedges per 1k tokens and mean response length. The first ``baseline_steps``
steps with rollouts are the baseline. From then on, at every step, each series (the baseline steps followed by the
last ``window`` steps) gets a one-sided Mann-Kendall trend test for a *decrease*, and an effect size: the relative
change of the mean of the last ``recent`` steps against the baseline mean.

A series *falls* when the test's p-value is below ``alpha`` and the relative drop is at least ``min_drop`` (hedge
rate) or ``min_length_drop`` (length). States:

- ``suppressing``: the hedge rate has fallen on ``confirm`` consecutive steps.
- ``warning``: the hedge rate fell on fewer consecutive steps than that, or only the length fell.
- ``ok``: neither.

Why Mann-Kendall (and not CUSUM): CUSUM needs the per-step standard deviation and the size of the shift to look for;
from five baseline steps the first is a guess and the second is what we want to measure, and a wrong guess moves the
false-alarm rate by orders of magnitude. Mann-Kendall uses only the order of the values, so heavy-tailed step noise
(a few very long rollouts) cannot fire it, and it has power against any monotone fall, linear or sudden. Keeping the
baseline steps in the tested series means a collapse that has already happened and levelled off still shows as a
trend. The effect-size gate keeps a tiny but significant drift (a 3% fall over 200 steps) from raising an alarm; the
confirmation requirement bounds the false alarms of testing at every step. The rates these settings give, measured by
simulation (:mod:`sdlens.monitor.simulate`), are in docs/monitor.md.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from sdlens.monitor.config import DetectorConfig

__all__ = ["STATES", "Detector", "DetectorConfig", "Verdict", "mann_kendall_decrease"]

STATES = ("ok", "warning", "suppressing")


def mann_kendall_decrease(values: np.ndarray | list[float]) -> tuple[float, float]:
    """One-sided Mann-Kendall test for a downward trend: ``(Kendall's tau, p-value)``.

    ``S = sum_{i<j} sign(x_j - x_i)``; under no trend ``S`` is approximately normal with variance
    ``n(n-1)(2n+5)/18`` minus the tie correction; p is ``P(Z <= z)`` with a continuity correction.
    """
    x = np.asarray(values, dtype=float)
    n = len(x)
    if n < 3:
        return 0.0, 1.0
    diff = np.sign(x[None, :] - x[:, None])
    s = float(np.triu(diff, k=1).sum())
    _, counts = np.unique(x, return_counts=True)
    ties = float(sum(t * (t - 1) * (2 * t + 5) for t in counts if t > 1))
    var = (n * (n - 1) * (2 * n + 5) - ties) / 18.0
    tau = s / (n * (n - 1) / 2)
    if var <= 0:
        return tau, 1.0
    z = (s + 1) / math.sqrt(var) if s < 0 else (s - 1) / math.sqrt(var) if s > 0 else 0.0
    return tau, 0.5 * math.erfc(-z / math.sqrt(2))  # Phi(z)


@dataclass
class Verdict:
    """The detector's reading after one step (JSON-ready with :meth:`to_dict`)."""

    state: str
    step: int | None
    reason: str
    hedge_tau: float | None = None
    hedge_p: float | None = None
    hedge_change: float | None = None  # relative change of the recent mean against the baseline (-0.4: fell 40%)
    length_tau: float | None = None
    length_p: float | None = None
    length_change: float | None = None
    baseline_hedge: float | None = None
    baseline_length: float | None = None
    changed: bool = False  # the state differs from the previous step's

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Detector:
    """Feed it one step at a time (:meth:`update`); it keeps the series and the state history.

    ``first_fired`` maps each non-``ok`` state to the first step it was reached.
    """

    def __init__(self, config: DetectorConfig | None = None):
        self.config = config or DetectorConfig()
        self.steps: list[int | None] = []
        self.hedge: list[float] = []
        self.length: list[float] = []
        self.state = "ok"
        self.streak = 0
        self.first_fired: dict[str, int | None] = {}
        self.last: Verdict = Verdict("ok", None, "no data yet")

    def _series(self, values: list[float]) -> np.ndarray:
        b, w = self.config.baseline_steps, self.config.window
        base, rest = values[:b], values[b:]
        return np.asarray(base + rest[-w:], dtype=float)

    def _test(self, values: list[float]) -> tuple[float, float, float | None, float]:
        cfg = self.config
        base_mean = float(np.mean(values[: cfg.baseline_steps]))
        recent = float(np.mean(values[-cfg.recent :]))
        change = (recent - base_mean) / base_mean if base_mean > 0 else None
        tau, p = mann_kendall_decrease(self._series(values))
        return tau, p, change, base_mean

    def update(self, hedge_per_1k: float | None, mean_length: float | None, step: int | None = None) -> Verdict:
        """Add one step's hedge rate and mean length (``None``: a step without rollouts, ignored)."""
        if hedge_per_1k is None or mean_length is None or not math.isfinite(hedge_per_1k + mean_length):
            return self.last
        cfg = self.config
        self.steps.append(step)
        self.hedge.append(float(hedge_per_1k))
        self.length.append(float(mean_length))
        previous = self.state
        if len(self.hedge) <= cfg.baseline_steps:
            v = Verdict("ok", step, f"collecting the baseline ({len(self.hedge)}/{cfg.baseline_steps} steps)")
            self.last = v
            return v
        h_tau, h_p, h_change, h_base = self._test(self.hedge)
        l_tau, l_p, l_change, l_base = self._test(self.length)
        hedge_falls = h_p < cfg.alpha and h_change is not None and h_change <= -cfg.min_drop
        length_falls = l_p < cfg.alpha and l_change is not None and l_change <= -cfg.min_length_drop
        self.streak = self.streak + 1 if hedge_falls else 0
        if hedge_falls and self.streak >= cfg.confirm:
            state = "suppressing"
            reason = f"hedge rate down {-h_change:.0%} from the baseline (Mann-Kendall p={h_p:.2g})"
            if length_falls:
                reason += f", responses {-l_change:.0%} shorter: the paper's signature"
        elif hedge_falls:
            state = "warning"
            reason = f"hedge rate down {-h_change:.0%} (p={h_p:.2g}), not yet confirmed"
        elif length_falls:
            state = "warning"
            reason = f"responses {-l_change:.0%} shorter than the baseline (p={l_p:.2g}), hedge rate holding"
        else:
            state = "ok"
            reason = "no significant fall of the hedge rate or the length"
        self.state = state
        if state != "ok" and state not in self.first_fired:
            self.first_fired[state] = step
            if state == "suppressing":
                self.first_fired.setdefault("warning", step)
        v = Verdict(
            state=state,
            step=step,
            reason=reason,
            hedge_tau=h_tau,
            hedge_p=h_p,
            hedge_change=h_change,
            length_tau=l_tau,
            length_p=l_p,
            length_change=l_change,
            baseline_hedge=h_base,
            baseline_length=l_base,
            changed=state != previous,
        )
        self.last = v
        return v

    def summary(self) -> dict[str, Any]:
        """The final verdict plus when each state first fired (JSON-ready)."""
        return {**self.last.to_dict(), "first_fired": dict(self.first_fired), "n_steps": len(self.hedge)}
