"""Grading: answer extraction, graders (math-verify in a worker pool; the paper's training reward), audits.

Quick use::

    from sdlens.grading import get_grader
    grader = get_grader("math-verify", timeout=5)
    verdicts = grader.grade([("... so the answer is \\boxed{\\frac12}", "0.5")])
    verdicts[0].correct  # True

Every grader is safe to call from any thread: math-verify only ever runs in worker processes, each in its own
main thread, so its signal-based timeouts work, and a parent-side wall-clock guard kills a worker that hangs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

from sdlens.grading.audit import JUNK_RESPONSES, AuditReport, audit, audit_file
from sdlens.grading.base import GradeItem, Grader, Verdict, available_graders, get_grader, register_grader
from sdlens.grading.extract import ExtractMode, extract_answer, extract_answer_line, last_boxed, paper_last_boxed
from sdlens.grading.files import GradeSummary, grade_file
from sdlens.grading.graders import MathVerifyGrader, PaperRewardGrader
from sdlens.grading.pool import GraderUnavailable, get_pool, shutdown_pools
from sdlens.schema import Sample

__all__ = [
    "JUNK_RESPONSES",
    "AuditReport",
    "ExtractMode",
    "GradeItem",
    "GradeSummary",
    "Grader",
    "GraderUnavailable",
    "MathVerifyGrader",
    "PaperRewardGrader",
    "Verdict",
    "audit",
    "audit_file",
    "available_graders",
    "extract_answer",
    "extract_answer_line",
    "get_grader",
    "get_pool",
    "grade",
    "grade_file",
    "grade_samples",
    "last_boxed",
    "paper_last_boxed",
    "register_grader",
    "shutdown_pools",
]


def grade(response: str, gold: str, grader: str | Grader = "math-verify") -> Verdict:
    """Grade one response (convenient; batch with ``Grader.grade`` for speed)."""
    g = get_grader(grader) if isinstance(grader, str) else grader
    return g.grade([GradeItem(response, gold)])[0]


def grade_samples(samples: Iterable[Sample], grader: str | Grader = "math-verify") -> list[Sample]:
    """Copies of ``samples`` with ``extracted``, ``correct``, ``grader`` set (``meta["grade_error"]`` if any).

    Each sample needs its gold ``answer``; a sample without one is graded incorrect with the reason recorded.
    """
    g = get_grader(grader) if isinstance(grader, str) else grader
    samples = list(samples)
    items: Sequence[GradeItem] = [GradeItem(s.response, s.answer) for s in samples]
    out = []
    for s, v in zip(samples, g.grade(items), strict=True):
        meta = dict(s.meta)
        if v.error:
            meta["grade_error"] = v.error
        else:
            meta.pop("grade_error", None)
        out.append(replace(s, extracted=v.extracted, correct=v.correct, grader=g.name, meta=meta))
    return out
