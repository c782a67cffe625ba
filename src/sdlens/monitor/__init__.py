"""Live epistemic telemetry for TRL trainers and the suppression detector (docs/monitor.md).

- :class:`EpistemicCallback` / :func:`monitor_trainer`: per logging step, hedging statistics of the student's own
  rollouts, the teacher-student gap at hedge positions (SDPO), logged under ``epistemic/...`` and to
  ``OUT/epistemic.jsonl``.
- :class:`Detector`: baseline, one-sided Mann-Kendall trend test with an effect-size gate; ``ok`` / ``warning`` /
  ``suppressing``.
- :func:`read_run`: the same statistics and verdict offline, from a run's ``epistemic.jsonl``, verl rollout dumps,
  TRL completion logs or per-checkpoint eval samples (``sdlens monitor``).

The callback imports ``transformers``; the detector, statistics and offline reader do not.
"""

from sdlens.monitor.detector import STATES, Detector, DetectorConfig, Verdict, mann_kendall_decrease
from sdlens.monitor.stats import Rollout, step_stats

__all__ = [
    "STATES",
    "Detector",
    "DetectorConfig",
    "EpistemicCallback",
    "MonitorConfig",
    "Rollout",
    "Verdict",
    "mann_kendall_decrease",
    "monitor_trainer",
    "read_run",
    "step_stats",
]


def __getattr__(name: str):
    # the callback needs transformers and the offline reader pulls in sdlens.io: import them on first use
    if name in ("EpistemicCallback", "MonitorConfig", "monitor_trainer", "LOG_FILE"):
        from sdlens.monitor import callback

        return getattr(callback, name)
    if name == "read_run":
        from sdlens.monitor.offline import read_run

        return read_run
    raise AttributeError(name)
