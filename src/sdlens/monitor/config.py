"""The monitor's settings, in a light module (``sdlens monitor --help`` reads each option's help from these
fields): the suppression detector's :class:`DetectorConfig`, the live monitor's :class:`MonitorConfig` and the offline
reader's :class:`OfflineConfig`."""

from __future__ import annotations

from dataclasses import dataclass

from sdlens.fields import documented as h

__all__ = ["LOG_FILE", "DetectorConfig", "MonitorConfig", "OfflineConfig"]

LOG_FILE = "epistemic.jsonl"


@dataclass
class DetectorConfig:
    """Settings of the suppression detector (defaults: docs/monitor.md gives their measured error rates)."""

    baseline_steps: int = h(8, "Logging steps with rollouts that form the detector's baseline.")
    window: int = h(30, "Most recent steps tested after the baseline (older dropped).")
    alpha: float = h(0.01, "One-sided Mann-Kendall significance level per test.")
    min_drop: float = h(0.4, "Relative fall of the hedge rate that counts (0.4: -40%).")
    min_length_drop: float = h(0.2, "Relative fall of the mean length that counts.")
    recent: int = h(5, "Steps averaged for the effect size against the baseline.")
    confirm: int = h(3, "Consecutive steps with a falling hedge rate for suppressing.")


@dataclass
class MonitorConfig:
    """Settings of the live monitor (:class:`sdlens.monitor.callback.EpistemicCallback`)."""

    out_dir: str | None = h(None, f"Folder of {LOG_FILE}; default: args.output_dir.")
    lexicon: str = h("words", "Lexicon of the rates, splits and hedge positions.")
    stop_on_suppression: bool = h(False, "Stop training once the state is suppressing.")
    correct_reward: str | None = h(
        None, "Reward function (by name) whose value marks a rollout correct; default: the first."
    )
    correct_threshold: float = h(0.5, "A rollout is correct when its reward exceeds it.")
    mechanism: bool = h(True, "Teacher-student gap at hedge positions (SDPO).")
    detector: DetectorConfig = h(default_factory=DetectorConfig, help="The suppression detector's settings.")


@dataclass
class OfflineConfig:
    """How :func:`sdlens.monitor.offline.read_run` reads a finished (or running) run: ``sdlens monitor``'s settings."""

    fmt: str | None = h(None, "Force an input format (verl-dump, trl-completions, ...); default: detected.")
    tokenizer: str | None = h(None, "Tokenizer for per-1k-token rates of sample files (else words).")
    lexicon: str = h("words", "Lexicon of the rates: words, companion, a TOML.")
    detector: DetectorConfig = h(default_factory=DetectorConfig, help="The suppression detector's settings.")
