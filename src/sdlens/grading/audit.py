"""Grader audit: every grader on the same samples, how often they agree, where they disagree, and a negative
control (junk responses that every grader must score 0)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sdlens.grading.base import GradeItem, Grader, Verdict, get_grader

__all__ = ["JUNK_RESPONSES", "AuditReport", "audit", "audit_file"]

# Responses that answer nothing. Whatever the gold answer, no grader may score one of them correct.
JUNK_RESPONSES: tuple[str, ...] = (
    "",
    "I don't know.",
    "The answer is \\boxed{}.",
    "The answer is \\boxed{",
    "So the final answer is \\boxed{\\text{no idea}}",
    "<think>\nLet me think about this carefully.\n</think>\n",
    "<think>\nWait, maybe I should check that again. " + "Hmm, " * 300,
    ("The quick brown fox jumps over the lazy dog. " * 120).strip(),
)
CONTROL_GOLDS = 100  # distinct gold answers the control is run against


@dataclass
class AuditReport:
    graders: list[str]
    n: int
    accuracy: dict[str, float]
    extracted: dict[str, float]
    errors: dict[str, int]
    agreement: dict[str, dict[str, float]]
    pairs: list[dict[str, Any]]
    n_disagree: int
    disagreements: list[dict[str, Any]]
    control: dict[str, Any] = field(default_factory=dict)

    @property
    def control_passed(self) -> bool:
        return bool(self.control.get("passed", True))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["control_passed"] = self.control_passed
        return d


def _verdict_dict(v: Verdict) -> dict[str, Any]:
    return {"extracted": v.extracted, "correct": v.correct, "error": v.error}


def audit(
    items: Sequence[GradeItem | tuple[str, str | None]],
    graders: Sequence[Grader],
    *,
    labels: Sequence[dict[str, Any]] | None = None,
    max_examples: int = 20,
    control: bool = True,
    tail_chars: int = 300,
) -> AuditReport:
    """Run every grader on ``items``; ``labels[i]`` (e.g. ``{"line": 3, "problem_id": "p1"}``) tags examples."""
    if len(graders) < 1:
        raise ValueError("audit needs at least one grader")
    names = [g.name for g in graders]
    results: dict[str, list[Verdict]] = {g.name: g.grade(items) for g in graders}
    n = len(items)
    accuracy = {k: (sum(v.correct for v in vs) / n if n else 0.0) for k, vs in results.items()}
    extracted = {k: (sum(v.extracted is not None for v in vs) / n if n else 0.0) for k, vs in results.items()}
    errors = {k: sum(v.error is not None for v in vs) for k, vs in results.items()}
    agreement: dict[str, dict[str, float]] = {a: {} for a in names}
    pairs = []
    for ia, a in enumerate(names):
        for b in names:
            same = sum(x.correct == y.correct for x, y in zip(results[a], results[b], strict=True))
            agreement[a][b] = same / n if n else 1.0
        for b in names[ia + 1 :]:
            ra, rb = results[a], results[b]
            pairs.append(
                {
                    "a": a,
                    "b": b,
                    "agree": sum(x.correct == y.correct for x, y in zip(ra, rb, strict=True)),
                    "both_correct": sum(x.correct and y.correct for x, y in zip(ra, rb, strict=True)),
                    "both_incorrect": sum(not x.correct and not y.correct for x, y in zip(ra, rb, strict=True)),
                    "only_a": sum(x.correct and not y.correct for x, y in zip(ra, rb, strict=True)),
                    "only_b": sum(not x.correct and y.correct for x, y in zip(ra, rb, strict=True)),
                }
            )
    disagreements = []
    n_disagree = 0
    for i in range(n):
        verdicts = {k: results[k][i] for k in names}
        if len({v.correct for v in verdicts.values()}) > 1:
            n_disagree += 1
            if len(disagreements) < max_examples:
                response, gold = items[i]
                example: dict[str, Any] = {"index": i}
                if labels is not None:
                    example.update(labels[i])
                example["gold"] = gold
                example["response_tail"] = response[-tail_chars:]
                example["verdicts"] = {k: _verdict_dict(v) for k, v in verdicts.items()}
                disagreements.append(example)
    report = AuditReport(names, n, accuracy, extracted, errors, agreement, pairs, n_disagree, disagreements)
    if control:
        report.control = negative_control(items, graders)
    return report


def negative_control(items: Sequence[GradeItem | tuple[str, str | None]], graders: Sequence[Grader]) -> dict[str, Any]:
    """Score :data:`JUNK_RESPONSES` against (up to 100 of) the gold answers under every grader."""
    golds: list[str] = []
    seen: set[str] = set()
    for _, gold in items:
        if gold is not None and gold not in seen:
            seen.add(gold)
            golds.append(gold)
            if len(golds) >= CONTROL_GOLDS:
                break
    if not golds:
        golds = ["42"]
    junk = [GradeItem(r, g) for g in golds for r in JUNK_RESPONSES]
    false_positives: dict[str, int] = {}
    examples = []
    for g in graders:
        verdicts = g.grade(junk)
        bad = [i for i, v in enumerate(verdicts) if v.correct]
        false_positives[g.name] = len(bad)
        for i in bad[:5]:
            examples.append({"grader": g.name, "gold": junk[i].gold, "response": junk[i].response[:200]})
    return {
        "n": len(junk),
        "golds": len(golds),
        "responses": len(JUNK_RESPONSES),
        "false_positives": false_positives,
        "examples": examples,
        "passed": all(v == 0 for v in false_positives.values()),
    }


LABEL_KEYS = ("problem_id", "index", "id", "source")


def audit_file(
    path: str | Path,
    grader_names: Sequence[str] | None = None,
    *,
    options: dict[str, dict[str, Any]] | None = None,
    max_examples: int = 20,
    control: bool = True,
) -> AuditReport:
    """Audit the graders named (default: all registered) on the records of a JSONL / Parquet file."""
    from sdlens.grading.base import available_graders
    from sdlens.grading.files import gold_answer, response_text
    from sdlens.io import iter_records

    path = Path(path)
    items: list[GradeItem] = []
    labels: list[dict[str, Any]] = []
    for line, obj in iter_records(path):
        items.append(GradeItem(response_text(obj, path, line), gold_answer(obj, path, line)))
        label = {"line": line}
        label.update({k: obj[k] for k in LABEL_KEYS if k in obj and isinstance(obj[k], str | int)})
        labels.append(label)
    names = list(grader_names) if grader_names else available_graders()
    options = options or {}
    graders = [get_grader(name, **options.get(name, {})) for name in names]
    return audit(items, graders, labels=labels, max_examples=max_examples, control=control)
