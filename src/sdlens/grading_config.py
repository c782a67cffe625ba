"""The settings of the grading commands (``sdlens grade``, ``sdlens graders audit``, ``sdlens metrics``), in a light
module: their ``--help`` reads each option's help from these fields, and the packages that run them
(:mod:`sdlens.grading`, :mod:`sdlens.metrics`) are not imported to print it."""

from __future__ import annotations

from dataclasses import dataclass

from sdlens.fields import documented as h

__all__ = ["AuditConfig", "GradeConfig", "MetricsConfig", "WorkerSettings"]


@dataclass
class WorkerSettings:
    """The grading worker pool (:mod:`sdlens.grading.pool`)."""

    workers: int | None = h(None, "Grading worker processes (default: one per core, max 8).")


@dataclass
class GradeConfig(WorkerSettings):
    """One grader and the options it is built with (``None``: the grader's default; an option the grader does not
    take is an error)."""

    grader: str = h("math-verify", "math-verify (default) or paper-reward (the paper's training reward).")
    timeout: int | None = h(None, "math-verify's time limit per parse / verify call, whole seconds [5].")
    hard_timeout: float | None = h(
        None, "Wall-clock seconds before a worker stuck on one answer is killed [3*timeout+5]."
    )
    extract: str | None = h(None, "Answer extraction: boxed (default), answer-line, boxed-or-answer-line.")
    think_aware: bool = h(
        True,
        "Look for the answer after the thinking only; --no-think-split looks in the whole response, thinking included.",
    )


@dataclass
class AuditConfig(WorkerSettings):
    """Every grader on the same samples (:func:`sdlens.grading.audit_file`)."""

    graders: tuple[str, ...] | None = h(None, "Graders to compare (repeat; default: all).")
    max_examples: int = h(10, "Disagreeing examples to show.")
    control: bool = h(True, "Run the junk-response negative control; --no-control skips it.")


@dataclass
class MetricsConfig:
    """Sampling statistics of graded samples (:func:`sdlens.metrics.compute_metrics`)."""

    fmt: str | None = h(None, "Input format (default: auto-detect; see `sdlens analyze --help`).")
    ks: tuple[int, ...] | None = h(None, "k for pass@k and maj@k, e.g. 1,4,16 [1, 2, 4.., n].")
    resamples: int = h(1000, "Bootstrap resamples for the 95% CIs.")
    seed: int = h(0, "Bootstrap seed.")
    tokenizer: str | None = h(None, "Tokenizer (hub id or local folder) for token lengths.")
    by: str | None = h(None, "One report per value of a sample field: model, step, context...")
