"""Section 3 of the paper: how a model reasons when it sees a correct solution (Table 1).

1. Sample ``n`` responses per problem, unguided, scanning the data in file order ``scan_batch`` problems at a time,
   and keep the problems with ``window[0] <= #correct <= window[1]`` until ``max_problems`` are kept.
2. Regenerate ``n`` responses per kept problem under each context (:mod:`sdlens.experiments.contexts`): ``s`` the
   model's own first correct response, ``s-nothink`` the same without its thinking, ``regen`` the first correct
   response of the ``s`` round (else its first). ``none`` keeps the unguided samples of step 1.
3. Table 1: score (avg@n), length in tokens, E per response, E per 1k tokens, each with a 95% CI over problems.

Run folder::

    OUT/manifest.json  OUT/summary.json
    OUT/eval/<unguided|s|s-nothink|regen>/   sdlens eval folders (samples.jsonl, metrics.json, manifest.json)
    OUT/prompts/<context>.jsonl               the kept Problems (none) and the hinted ones each round sampled from
    OUT/samples/<context>.jsonl               the kept Samples of each context (``context`` set)

Every stage is an :func:`sdlens.evaluate.run_eval`, so a killed run resumes where it stopped.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from sdlens.experiments.common import (
    bench_path,
    eval_stage,
    read_samples,
    sample_stats,
    write_manifest,
)
from sdlens.experiments.config import CONTEXTS, RicherContextConfig
from sdlens.experiments.contexts import with_hint
from sdlens.runfolder import read_json, write_json
from sdlens.schema import Problem, Sample, write_jsonl

__all__ = ["RicherContextConfig", "first_correct", "run_richer_context", "select_problems"]

KIND = "richer-context"


def first_correct(samples: list[Sample]) -> Sample | None:
    """The lowest-index correct sample (the paper's ``correct_solutions[0]``)."""
    ok = sorted((s for s in samples if s.correct), key=lambda s: s.index)
    return ok[0] if ok else None


def _by_problem(samples: list[Sample], n: int) -> dict[str, list[Sample]]:
    out: dict[str, list[Sample]] = {}
    for s in samples:
        if s.index < n:
            out.setdefault(s.problem_id, []).append(s)
    for v in out.values():
        v.sort(key=lambda s: s.index)
    return out


def select_problems(
    problems: list[Problem], samples: list[Sample], n: int, window: tuple[int, int], max_problems: int
) -> list[Problem]:
    """Problems in file order whose ``n`` samples hold ``window[0]..window[1]`` correct ones (``max_problems`` at
    most)."""
    groups = _by_problem(samples, n)
    kept = []
    for p in problems:
        ss = groups.get(p.id, [])
        if len(ss) == n and window[0] <= sum(bool(s.correct) for s in ss) <= window[1]:
            kept.append(p)
            if len(kept) == max_problems:
                break
    return kept


def _stage(cfg: RicherContextConfig, benchmark: str, out: Path, console: Any, *, limit=None, overwrite=False):
    return eval_stage(cfg, benchmark=benchmark, out=out, n=cfg.n, limit=limit, console=console, overwrite=overwrite)


def _say(console: Any, msg: str) -> None:
    if console is not None:
        console.print(msg)


def _scan(cfg: RicherContextConfig, out: Path, console: Any) -> tuple[list[Problem], list[Sample], int, Any]:
    """Round 0: sample unguided, ``scan_batch`` more problems at a time, until enough fall in the window."""
    from sdlens.benchmarks import load_benchmark

    bench = load_benchmark(cfg.data)
    total = len(bench.problems)
    limit = 0
    while True:
        limit = min(total, limit + cfg.scan_batch)
        _stage(cfg, cfg.data, out / "eval" / "unguided", console, limit=limit)
        samples = read_samples(out / "eval" / "unguided" / "samples.jsonl")
        kept = select_problems(bench.problems[:limit], samples, cfg.n, cfg.window, cfg.max_problems)
        _say(console, f"scanned {limit}/{total} problems: {len(kept)} with {cfg.window[0]}-{cfg.window[1]} correct")
        if len(kept) >= cfg.max_problems or limit >= total:
            return kept, samples, limit, bench


def _hinted_round(cfg, out: Path, name: str, problems: list[Problem], console: Any) -> list[Sample]:
    """Sample ``n`` per hinted problem (``OUT/prompts/<name>.jsonl`` -> ``OUT/eval/<name>``)."""
    prompts = out / "prompts" / f"{name}.jsonl"
    write_jsonl(prompts, problems)
    _stage(cfg, str(prompts), out / "eval" / name, console, overwrite=True)
    groups = _by_problem(read_samples(out / "eval" / name / "samples.jsonl"), cfg.n)
    return [s for p in problems for s in groups.get(p.id, [])]


def _tag(samples: list[Sample], context: str, hints: dict[str, str] | None = None) -> list[Sample]:
    out = []
    for s in samples:
        meta = dict(s.meta)
        if hints is not None:
            meta["hint_solution"] = hints.get(s.problem_id)
        out.append(replace(s, context=context, meta=meta))
    return out


def run_richer_context(cfg: RicherContextConfig, console: Any = None) -> dict[str, Any]:
    """Run (or resume) the section-3 experiment; returns the summary also written to ``OUT/summary.json``.

    Summary keys: ``kind`` ("richer-context"), ``contexts`` {context: {``score``, ``length``, ``E``, ``E_per_1k``
    (each {``value``, ``ci``}), ``share_with_any``, ``per_word``, ``problems``, ``samples``}}, ``selection``
    (scanned / kept problems, correct counts), ``files``, ``config``."""
    cfg.check()
    out = Path(cfg.out)
    write_manifest(out, KIND, cfg, {"data": bench_path(cfg.data)}, status="running")
    kept, unguided, scanned, bench = _scan(cfg, out, console)
    groups = _by_problem(unguided, cfg.n)
    summary: dict[str, Any] = {
        "kind": KIND,
        "model": cfg.model,
        "data": cfg.data,
        "n": cfg.n,
        "window": list(cfg.window),
        "lexicon": cfg.lexicon,
        "selection": {
            "scanned": scanned,
            "available": len(bench.problems),
            "kept": len(kept),
            "kept_ids": [p.id for p in kept],
            "correct_counts": {p.id: sum(bool(s.correct) for s in groups[p.id]) for p in kept},
        },
        "contexts": {},
        "files": {},
    }
    if not kept:
        summary["warning"] = (
            f"no problem had {cfg.window[0]}-{cfg.window[1]} of {cfg.n} correct unguided samples "
            f"({scanned} scanned): nothing to condition on"
        )
        _finish(out, cfg, summary)
        return summary

    write_jsonl(out / "prompts" / "none.jsonl", kept)  # the kept problems as asked: the folder stands on its own
    per_context: dict[str, list[Sample]] = {}
    if "none" in cfg.contexts:
        per_context["none"] = _tag([s for p in kept for s in groups[p.id]], "none")
    solutions = {p.id: first_correct(groups[p.id]).response for p in kept}  # type: ignore[union-attr]
    want = set(cfg.contexts)
    if "regen" in want:
        want.add("s")
    for ctx in ("s", "s-nothink"):
        if ctx in want:
            hinted = [with_hint(p, solutions[p.id], ctx) for p in kept]
            shown = {p.id: p.meta["hint_solution"] for p in hinted}
            per_context[ctx] = _tag(_hinted_round(cfg, out, ctx, hinted, console), ctx, shown)
    if "regen" in want:
        s_groups = _by_problem(per_context["s"], cfg.n)
        best = {}
        for p in kept:
            ss = s_groups.get(p.id, [])
            top = first_correct(ss) or (ss[0] if ss else None)
            if top is not None:
                best[p.id] = top.response
        hinted = [with_hint(p, best[p.id], "regen") for p in kept if p.id in best]
        per_context["regen"] = _tag(_hinted_round(cfg, out, "regen", hinted, console), "regen", best)

    for ctx in CONTEXTS:
        if ctx not in per_context:
            continue
        path = out / "samples" / f"{ctx}.jsonl"
        write_jsonl(path, per_context[ctx])
        summary["files"][ctx] = str(path.relative_to(out))
        summary["contexts"][ctx] = sample_stats(per_context[ctx], cfg.lexicon)
    _finish(out, cfg, summary)
    return summary


def _finish(out: Path, cfg: RicherContextConfig, summary: dict[str, Any]) -> None:
    summary["config"] = (read_json(out / "manifest.json") or {}).get("config")
    write_json(out / "summary.json", summary)
    write_manifest(out, KIND, cfg, {"data": bench_path(cfg.data)}, status="complete")
