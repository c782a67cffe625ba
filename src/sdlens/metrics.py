"""Sampling statistics over graded Samples: avg@n, unbiased pass@k, maj@k, any-correct@n, bootstrap CIs.

Definitions (per problem with ``n`` graded samples of which ``c`` are correct; every metric is then the mean over
problems, and its 95% CI is a percentile bootstrap over problems):

- ``avg@n`` = c / n — the paper's main number ("Avg@16" / "Acc@16").
- ``pass@k`` = 1 - C(n-c, k) / C(n, k), the unbiased estimator of Chen et al. (2021), computed as the stable
  product ``1 - prod_{i=n-c+1..n} (1 - k/i)``; requires k <= n for every problem.
- ``any-correct@n`` = 1 if c > 0 — what the paper prints as "Pass@16". It equals pass@n.
- ``maj@k``: a majority vote over the first k samples by ``index``. All correct samples form one answer class
  (they all equal the gold answer); incorrect ones are grouped by their extracted answer (whitespace and enclosing
  ``$`` removed); samples with nothing extracted do not vote. A problem scores 1 when the correct class has the
  most votes, 1/t when it ties with t-1 other classes (the expected score of breaking the tie at random), else 0.

Lengths: response tokens of the full text and thinking tokens of the thinking part (split by
:func:`sdlens.epistemic.segment.split_thinking`, so a pre-opened template's ``...</think>`` counts as thinking,
unlike the paper's eval, which counts 0 when ``<think>`` is missing), when a tokenizer is given; otherwise the
samples' ``n_tokens`` / ``n_thinking_tokens`` when present.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sdlens.epistemic.segment import split_thinking
from sdlens.errors import InputError
from sdlens.models import load_tokenizer
from sdlens.schema import Sample
from sdlens.stats import bootstrap_ci

__all__ = [
    "Estimate",
    "MetricsError",
    "MetricsReport",
    "bootstrap_ci",
    "compute_metrics",
    "compute_metrics_by",
    "default_ks",
    "load_tokenizer",
    "maj_at_k",
    "pass_at_k",
    "read_graded_samples",
]


class MetricsError(ValueError):
    """The samples cannot give the requested statistic (k > n, nothing graded...)."""


# ---------------------------------------------------------------- per-problem estimators


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem: P(at least one of k samples drawn without replacement is correct)."""
    if not 0 <= c <= n:
        raise MetricsError(f"need 0 <= c <= n, got n={n}, c={c}")
    if k < 1:
        raise MetricsError(f"k must be >= 1, got {k}")
    if k > n:
        raise MetricsError(f"pass@{k} needs at least k={k} samples per problem, got n={n}")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def _vote_key(extracted: str) -> str:
    s = "".join(extracted.split())
    while len(s) >= 2 and s[0] == "$" and s[-1] == "$":
        s = s[1:-1]
    return s


_CORRECT = object()


def maj_at_k(votes: Sequence[tuple[str | None, bool]], k: int) -> float:
    """maj@k for one problem from ``(extracted, correct)`` pairs in sample order (see the module doc)."""
    if k < 1:
        raise MetricsError(f"k must be >= 1, got {k}")
    if k > len(votes):
        raise MetricsError(f"maj@{k} needs at least k={k} samples per problem, got n={len(votes)}")
    counts: Counter = Counter()
    for extracted, correct in votes[:k]:
        if correct:
            counts[_CORRECT] += 1
        elif extracted:
            key = _vote_key(extracted)
            if key:
                counts[key] += 1
    if not counts or _CORRECT not in counts:
        return 0.0
    top = max(counts.values())
    if counts[_CORRECT] < top:
        return 0.0
    tied = sum(1 for v in counts.values() if v == top)
    return 1.0 / tied


# ---------------------------------------------------------------- report


@dataclass
class Estimate:
    value: float
    lo: float | None = None
    hi: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "ci": None if self.lo is None else [self.lo, self.hi]}


@dataclass
class MetricsReport:
    n_problems: int
    n_samples: int
    n_min: int
    n_max: int
    ks: list[int]
    metrics: dict[str, Estimate]
    by_source: dict[str, dict[str, Any]] = field(default_factory=dict)
    lengths: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    bootstrap: dict[str, Any] = field(default_factory=dict)
    group: dict[str, Any] | None = None  # set for one group of a ``by=`` breakdown

    def to_dict(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "n_problems": self.n_problems,
            "n_samples": self.n_samples,
            "n": {"min": self.n_min, "max": self.n_max},
            "ks": self.ks,
            "metrics": {k: v.to_dict() for k, v in self.metrics.items()},
            "by_source": {
                s: {
                    **{k: v for k, v in d.items() if k != "metrics"},
                    "metrics": {k: v.to_dict() for k, v in d["metrics"].items()},
                }
                for s, d in self.by_source.items()
            },
            "lengths": self.lengths,
            "warnings": self.warnings,
            "bootstrap": self.bootstrap,
        }


@dataclass
class _Problem:
    problem_id: str
    source: str | None
    samples: list[Sample] = field(default_factory=list)

    def ordered(self) -> list[Sample]:
        return sorted(self.samples, key=lambda s: s.index)  # stable: input order among equal indices


def default_ks(n_min: int) -> list[int]:
    """1, the powers of two below n, and n itself."""
    ks = {1, n_min}
    k = 2
    while k < n_min:
        ks.add(k)
        k *= 2
    return sorted(ks)


def _metric_names(ks: Sequence[int]) -> list[str]:
    """Stable keys: ``avg@n`` and ``any-correct@n`` use each problem's n (``MetricsReport.n_min/n_max``)."""
    return ["avg@n"] + [f"pass@{k}" for k in ks] + [f"maj@{k}" for k in ks] + ["any-correct@n"]


def _scores(problems: list[_Problem], ks: Sequence[int]) -> np.ndarray:
    rows = []
    for prob in problems:
        ordered = prob.ordered()
        n = len(ordered)
        c = sum(bool(s.correct) for s in ordered)
        votes = [(s.extracted, bool(s.correct)) for s in ordered]
        row = [c / n]
        row += [pass_at_k(n, c, k) for k in ks]
        row += [maj_at_k(votes, k) for k in ks]
        row.append(1.0 if c > 0 else 0.0)
        rows.append(row)
    return np.asarray(rows, dtype=float)


def _estimates(problems: list[_Problem], ks: Sequence[int], names: list[str], resamples: int, seed: int, level: float):
    scores = _scores(problems, ks)
    values = scores.mean(axis=0)
    if resamples > 0:
        lo, hi = bootstrap_ci(scores, resamples=resamples, seed=seed, level=level)
        return {name: Estimate(float(values[j]), float(lo[j]), float(hi[j])) for j, name in enumerate(names)}
    return {name: Estimate(float(values[j])) for j, name in enumerate(names)}


def compute_metrics(
    samples: Iterable[Sample],
    ks: Sequence[int] | None = None,
    *,
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    tokenizer: Any = None,
    by_source: bool = True,
) -> MetricsReport:
    """Metrics over graded samples, grouped into problems by ``problem_id``.

    ``ks``: the k of pass@k and maj@k (default :func:`default_ks`); a k larger than some problem's n is an error.
    ``resamples``: bootstrap resamples for the CIs (0: no CIs). ``tokenizer``: a Hugging Face tokenizer (or any
    callable ``str -> int``) for response / thinking lengths.
    """
    problems: dict[str, _Problem] = {}
    warnings: list[str] = []
    seen_keys: set[tuple[str, int]] = set()
    duplicates = 0
    zero_temp = 0
    pooled: dict[str, set] = defaultdict(set)
    n_samples = 0
    for s in samples:
        if s.correct is None:
            raise MetricsError(
                f"sample {s.problem_id!r} #{s.index} is not graded (correct is null); run `sdlens grade` first"
            )
        n_samples += 1
        prob = problems.get(s.problem_id)
        if prob is None:
            prob = problems[s.problem_id] = _Problem(s.problem_id, s.source)
        prob.samples.append(s)
        key = (s.problem_id, s.index)
        if key in seen_keys:
            duplicates += 1
        seen_keys.add(key)
        if s.sampling and s.sampling.get("temperature") == 0:
            zero_temp += 1
        for name in ("model", "step", "context"):
            value = getattr(s, name)
            if value is not None:
                pooled[name].add(value)
    if not problems:
        raise MetricsError("no samples")
    plist = list(problems.values())
    ns = [len(p.samples) for p in plist]
    n_min, n_max = min(ns), max(ns)
    if ks is None:
        ks = default_ks(n_min)
    ks = sorted(set(int(k) for k in ks))
    for k in ks:
        if k < 1:
            raise MetricsError(f"k must be >= 1, got {k}")
        if k > n_min:
            short = next(p for p in plist if len(p.samples) == n_min)
            raise MetricsError(
                f"k={k} is larger than n={n_min} (problem {short.problem_id!r} has {n_min} samples): pass@k and "
                f"maj@k need k <= n for every problem"
            )
    if zero_temp and n_max > 1:
        warnings.append(
            f"{zero_temp} samples were drawn at temperature 0 with n > 1 per problem: repeated greedy samples are "
            "(near-)identical, so avg@n / pass@k are not sampling statistics"
        )
    if n_min != n_max:
        warnings.append(f"n varies across problems ({n_min}..{n_max}): avg@n uses each problem's own n")
    if duplicates:
        warnings.append(f"{duplicates} samples repeat a (problem_id, index) pair: were files concatenated twice?")
    for name, values in pooled.items():
        if len(values) > 1:
            warnings.append(
                f"samples from {len(values)} different {name} values are pooled together; use by='{name}' "
                f"(CLI: --by {name}) to report them separately"
            )
    names = _metric_names(ks)
    metrics = _estimates(plist, ks, names, resamples, seed, level)
    report = MetricsReport(
        n_problems=len(plist),
        n_samples=n_samples,
        n_min=n_min,
        n_max=n_max,
        ks=list(ks),
        metrics=metrics,
        warnings=warnings,
        bootstrap={"resamples": resamples, "seed": seed, "level": level, "unit": "problem"},
    )
    if by_source:
        groups: dict[str, list[_Problem]] = defaultdict(list)
        for p in plist:
            groups[p.source if p.source is not None else "unknown"].append(p)
        if len(groups) > 1 or next(iter(groups)) != "unknown":
            for j, (src, probs) in enumerate(sorted(groups.items())):
                report.by_source[src] = {
                    "n_problems": len(probs),
                    "n_samples": sum(len(p.samples) for p in probs),
                    "metrics": _estimates(probs, ks, names, resamples, seed + 1 + j, level),
                }
    report.lengths = _lengths(plist, tokenizer)
    return report


def compute_metrics_by(
    samples: Iterable[Sample], by: str, ks: Sequence[int] | None = None, **options: Any
) -> list[MetricsReport]:
    """One report per value of the Sample field ``by`` (e.g. ``model``, ``step``, ``context``, ``source``)."""
    if by not in Sample.__dataclass_fields__ or by in ("meta", "sampling"):
        raise MetricsError(f"cannot group by {by!r}: use a Sample field such as model, step, context, source")
    groups: dict[Any, list[Sample]] = defaultdict(list)
    for s in samples:
        groups[getattr(s, by)].append(s)
    reports = []
    for value in sorted(groups, key=lambda v: (v is None, str(type(v)), v if v is not None else 0)):
        report = compute_metrics(groups[value], ks, **options)
        report.warnings = [w for w in report.warnings if f"by='{by}'" not in w]
        report.group = {"field": by, "value": value}
        reports.append(report)
    return reports


# ---------------------------------------------------------------- lengths


def _counter(tokenizer: Any) -> Callable[[list[str]], list[int]]:
    if hasattr(tokenizer, "encode") and callable(tokenizer):

        def count(texts: list[str]) -> list[int]:
            out: list[int] = []
            for i in range(0, len(texts), 256):
                enc = tokenizer(texts[i : i + 256], add_special_tokens=False)
                out.extend(len(ids) for ids in enc["input_ids"])
            return out

        return count
    if callable(tokenizer):
        return lambda texts: [int(tokenizer(t)) for t in texts]
    raise MetricsError("tokenizer must be a Hugging Face tokenizer or a callable str -> int")


def _stats(values: list[int], correct: list[bool]) -> dict[str, Any]:
    arr = np.asarray(values, dtype=float)
    ok = np.asarray(correct, dtype=bool)
    return {
        "mean": float(arr.mean()),
        "median": float(np.median(arr)),
        "max": int(arr.max()),
        "mean_correct": float(arr[ok].mean()) if ok.any() else None,
        "mean_incorrect": float(arr[~ok].mean()) if (~ok).any() else None,
    }


def _lengths(problems: list[_Problem], tokenizer: Any) -> dict[str, Any] | None:
    samples = [s for p in problems for s in p.samples]
    correct = [bool(s.correct) for s in samples]
    out: dict[str, Any] = {}
    if tokenizer is not None:
        count = _counter(tokenizer)
        thinking = [split_thinking(s.response)[0] for s in samples]
        out["from"] = "tokenizer"
        out["response_tokens"] = _stats(count([s.response for s in samples]), correct)
        out["thinking_tokens"] = _stats(count(thinking), correct)
    else:
        if all(s.n_tokens is not None for s in samples):
            out["from"] = "n_tokens"
            out["response_tokens"] = _stats([s.n_tokens for s in samples], correct)  # type: ignore[misc]
        if all(s.n_thinking_tokens is not None for s in samples):
            out.setdefault("from", "n_tokens")
            out["thinking_tokens"] = _stats([s.n_thinking_tokens for s in samples], correct)  # type: ignore[misc]
    finish = [s.finish_reason for s in samples if s.finish_reason is not None]
    if finish:
        out["truncated_fraction"] = sum(f == "length" for f in finish) / len(finish)
    return out or None


# ---------------------------------------------------------------- reading


def read_graded_samples(path: str | Path, fmt: str | None = None) -> Iterator[Sample]:
    """Graded Samples from any trace file ``sdlens.io`` reads (auto-detected, or ``fmt``): sdlens Samples, the
    paper's eval JSONL (``answers_correctness``), verl dumps, ...; an ungraded sample is an error naming its line."""
    from sdlens.io import detect_format, iter_samples
    from sdlens.io.stored import iter_parquet_records
    from sdlens.schema import from_dict

    path = Path(path)
    if not path.exists():
        raise InputError(path, "cannot open: No such file or directory")
    fmt = fmt or detect_format(path)
    rows: Iterable[tuple[int | None, Sample]]
    if fmt != "sdlens":
        rows = (
            (s.meta.get("line") if isinstance(s.meta.get("line"), int) else None, s) for s in iter_samples(path, fmt)
        )
    elif path.suffix.lower() in (".parquet", ".pq"):
        rows = enumerate(iter_parquet_records(path, Sample), start=1)
    else:
        from sdlens.io.jsonl import iter_json_lines

        rows = ((line, from_dict(Sample, obj, path=path, line=line)) for line, obj in iter_json_lines(path))
    for line, sample in rows:
        if sample.correct is None:
            raise InputError(
                path, "null or missing: the sample is not graded (run `sdlens grade` first)", line=line, field="correct"
            )
        yield sample
