"""The monitor's settings, in a light module (``sdlens monitor --help`` reads each option's help from these
fields): the suppression detector's :class:`DetectorConfig` and the offline reader's :class:`OfflineConfig`."""

from __future__ import annotations

from dataclasses import dataclass

from sdlens.fields import documented as h

__all__ = ["DetectorConfig", "OfflineConfig"]


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
class OfflineConfig:
    """How :func:`sdlens.monitor.offline.read_run` reads a finished (or running) run: ``sdlens monitor``'s settings."""

    fmt: str | None = h(None, "Force an input format (verl-dump, trl-completions, ...); default: detected.")
    tokenizer: str | None = h(None, "Tokenizer for per-1k-token rates of sample files (else words).")
    lexicon: str = h("words", "Lexicon of the rates: words, companion, a TOML.")
    detector: DetectorConfig = h(default_factory=DetectorConfig, help="The suppression detector's settings.")
