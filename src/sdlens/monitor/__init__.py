"""Live epistemic telemetry for TRL trainers and the suppression detector (docs/monitor.md).

- :class:`EpistemicCallback` / :func:`monitor_trainer`: per logging step, hedging statistics of the student's own
  rollouts, the teacher-student gap at hedge positions (SDPO), logged under ``epistemic/...`` and to
  ``OUT/epistemic.jsonl``.
- :class:`Detector`: baseline, one-sided Mann-Kendall trend test with an effect-size gate; ``ok`` / ``warning`` /
  ``suppressing``.
- :func:`read_run`: the same statistics and verdict offline, from a run's ``epistemic.jsonl``, verl rollout dumps,
  TRL completion logs or per-checkpoint eval samples (``sdlens monitor``).

The callback imports ``transformers``; the detector, statistics and offline reader do not; the settings
(:mod:`sdlens.monitor.config`) import nothing heavy.
"""

from __future__ import annotations

from sdlens.imports import lazy_attributes

__all__ = [
    "LOG_FILE",
    "STATES",
    "Detector",
    "DetectorConfig",
    "EpistemicCallback",
    "MonitorConfig",
    "OfflineConfig",
    "Rollout",
    "Verdict",
    "mann_kendall_decrease",
    "monitor_trainer",
    "read_run",
    "step_stats",
]

# Every name loads on first use: the settings (sdlens.monitor.config) stay light for the CLI's --help, the detector
# and statistics need numpy, the offline reader sdlens.io, the callback transformers.
_LAZY = {
    "DetectorConfig": "sdlens.monitor.config",
    "OfflineConfig": "sdlens.monitor.config",
    "STATES": "sdlens.monitor.detector",
    "Detector": "sdlens.monitor.detector",
    "Verdict": "sdlens.monitor.detector",
    "mann_kendall_decrease": "sdlens.monitor.detector",
    "Rollout": "sdlens.monitor.stats",
    "step_stats": "sdlens.monitor.stats",
    "read_run": "sdlens.monitor.offline",
    "EpistemicCallback": "sdlens.monitor.callback",
    "MonitorConfig": "sdlens.monitor.config",
    "monitor_trainer": "sdlens.monitor.callback",
    "LOG_FILE": "sdlens.monitor.config",
}

__getattr__ = lazy_attributes(__name__, _LAZY)
