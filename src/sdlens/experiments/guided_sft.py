r"""Section 4 of the paper: off-policy SFT on unguided vs solution-guided correct traces (Table 2).

1. Traces: a section-3 run (:mod:`sdlens.experiments.richer_context`, contexts ``none`` and ``s``; reused from
   ``from_richer_context`` or run into ``OUT/richer_context``). ``D_unguided`` holds each kept problem's first correct
   unguided response (the paper's ``correct_solutions[0]``), ``D_guided`` its first correct ``c = s`` response; only
   problems with both are used, so the two sets cover the same problems with the same count (``max_examples`` at most).
2. Files in the paper's LLaMA-Factory alpaca layout (``instruction`` = the user message, ``input`` "", ``output`` the
   trace, ``system`` "Please reason step by step, and put your final answer within \boxed{}.").
3. SFT each with the ``sft`` preset (``train_overrides`` as ``--set`` values) and evaluate base / SFT-unguided /
   SFT-guided on ``benchmarks``: avg@n with its CI, E per response, length (Table 2), plus the hedge counts.

Run folder::

    OUT/manifest.json  OUT/summary.json  OUT/richer_context/ (unless reused)
    OUT/data/sft_unguided.json  OUT/data/sft_guided.json
    OUT/train/<unguided|guided>/          sdlens train folders (final model at the top)
    OUT/eval/<base|unguided_sft|guided_sft>/<benchmark>/   sdlens eval folders
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

from sdlens.errors import InputError
from sdlens.experiments.common import (
    bench_path,
    eval_samples,
    read_samples,
    safe_name,
    sample_stats,
    write_manifest,
)
from sdlens.experiments.config import PAPER_SYSTEM, EvalSettings, GuidedSFTConfig
from sdlens.experiments.richer_context import RicherContextConfig, first_correct, run_richer_context
from sdlens.runfolder import atomic_path, read_json, write_json
from sdlens.schema import Sample
from sdlens.train.config import resolve_config
from sdlens.train.presets import get_preset

__all__ = ["MODELS", "PAPER_SYSTEM", "GuidedSFTConfig", "build_sft_sets", "run_guided_sft", "train_stage"]

KIND = "guided-sft"
_OWN_TRACE_SETTINGS = ("out", "top_k", "max_new_tokens")  # what the section-3 trace run sets for itself
MODELS = ("base", "unguided_sft", "guided_sft")


def _problem_prompts(rc_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """The unhinted prompt of every kept problem: the run's ``prompts/none.jsonl``, else its data file again."""
    from sdlens.benchmarks import load_benchmark
    from sdlens.io import read_records
    from sdlens.schema import Problem

    kept = rc_dir / "prompts" / "none.jsonl"
    if kept.is_file():
        return {p.id: p.messages for p in read_records(kept, Problem)}
    manifest = read_json(rc_dir / "manifest.json") or {}
    data = (manifest.get("config") or {}).get("data")
    if not data:
        raise InputError(rc_dir / "manifest.json", "no config.data: not a richer-context run folder", field="config")
    return {p.id: p.messages for p in load_benchmark(data).problems}


def build_sft_sets(rc_dir: str | Path, max_examples: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(D_unguided, D_guided)`` from a richer-context run folder: rows ``{problem_id, messages, output, n_tokens}``
    for the problems that have a correct unguided *and* a correct ``c = s`` trace, in selection order."""
    rc_dir = Path(rc_dir)
    summary = read_json(rc_dir / "summary.json")
    if not summary or summary.get("kind") != "richer-context":
        raise InputError(rc_dir / "summary.json", "not a finished richer-context run", field="kind")
    files = summary.get("files", {})
    for ctx in ("none", "s"):
        if ctx not in files:
            raise InputError(rc_dir / "summary.json", f"the run has no '{ctx}' context samples", field="files")
    groups = {ctx: _group(read_samples(rc_dir / files[ctx])) for ctx in ("none", "s")}
    prompts = _problem_prompts(rc_dir)
    d_ug: list[dict[str, Any]] = []
    d_g: list[dict[str, Any]] = []
    for pid in summary["selection"]["kept_ids"]:
        # an empty response cannot be an SFT target (the SFT loader refuses it), whatever the grader said
        a = first_correct([s for s in groups["none"].get(pid, []) if s.response.strip()])
        b = first_correct([s for s in groups["s"].get(pid, []) if s.response.strip()])
        if a is None or b is None:
            continue
        for dest, s in ((d_ug, a), (d_g, b)):
            dest.append({"problem_id": pid, "messages": prompts[pid], "output": s.response, "n_tokens": s.n_tokens})
        if len(d_ug) == max_examples:
            break
    return d_ug, d_g


def _group(samples: list[Sample]) -> dict[str, list[Sample]]:
    out: dict[str, list[Sample]] = {}
    for s in samples:
        out.setdefault(s.problem_id, []).append(s)
    return out


def _alpaca(rows: list[dict[str, Any]], system: str) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        msgs = r["messages"]
        user = msgs[-1]["content"]
        sys_msgs = [m["content"] for m in msgs[:-1] if m.get("role") == "system"]
        out.append({"instruction": user, "input": "", "output": r["output"], "system": system or " ".join(sys_msgs)})
    return out


def _write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(rows, ensure_ascii=False, indent=1) + "\n")


def train_stage(
    preset: str, model: str, data: str | Path, out: Path, sets: dict[str, Any], console: Any = None
) -> dict[str, Any]:
    """Train with ``preset`` (``sets`` as ``--set key=value``), or reuse a finished run in ``out`` (its
    ``run_summary.json``); an unfinished one resumes from its last complete checkpoint. A run made with other
    settings is refused with one line (its checkpoints would not be this configuration's)."""
    from sdlens.train.runner import CONFIG_FILE, run_train

    try:
        cfg = resolve_config(
            get_preset(preset).algo,
            preset=preset,
            overrides={"model": str(model), "data": str(data), "out": str(out), "resume": out.is_dir()},
            sets=[f"{k}={_yaml(v)}" for k, v in sets.items()],
        )
    except ValueError as e:
        raise InputError(None, str(e), field="train_overrides") from None
    saved = out / CONFIG_FILE
    if saved.is_file():
        import yaml

        old = yaml.safe_load(saved.read_text()) or {}
        new = cfg.to_dict()
        # the runner drops the chunked-loss fields when it falls back under DDP: not a change of settings
        launch = {"distillation_chunk_size", "chunked_rollout_logps", "chunked_distillation"}
        for d in (old, new):
            d["trl"] = {k: v for k, v in (d.get("trl") or {}).items() if k not in launch}
        diff = [
            k
            for k in ("algo", "preset", "model", "data", "trl")
            if json.dumps(old.get(k), sort_keys=True, default=str)
            != json.dumps(new.get(k), sort_keys=True, default=str)
        ]
        if diff:
            raise InputError(out, f"holds a training run with other settings ({', '.join(diff)}); use another --out")
    done = read_json(out / "run_summary.json")
    if done is not None:
        return done
    return run_train(cfg, console=console)


def _yaml(v: Any) -> str:
    return json.dumps(v) if isinstance(v, list | dict) else str(v)


def run_guided_sft(cfg: GuidedSFTConfig, console: Any = None) -> dict[str, Any]:
    """Run (or resume) the section-4 experiment; returns the summary also written to ``OUT/summary.json``.

    Summary keys: ``kind`` ("guided-sft"), ``datasets`` {``unguided``|``guided``: {``examples``, ``mean_tokens``,
    ``E``, ``file``}}, ``models`` {``base``|``unguided_sft``|``guided_sft``: {benchmark: {``score`` (avg@n), ``length``,
    ``E``, ``E_per_1k`` (each {``value``, ``ci``}), ``per_word``, ...}}}, ``table`` (Table 2: model -> benchmark ->
    accuracy), ``benchmarks``, ``richer_context`` (the trace run folder)."""
    cfg.check()
    out = Path(cfg.out)
    write_manifest(out, KIND, cfg, {"data": cfg.data if cfg.data and Path(cfg.data).is_file() else None})
    rc_dir = Path(cfg.from_richer_context) if cfg.from_richer_context else out / "richer_context"
    if not cfg.from_richer_context:
        rc = RicherContextConfig(
            out=str(rc_dir),
            contexts=("none", "s"),
            top_k=cfg.top_k if cfg.top_k is not None else 20,
            max_new_tokens=cfg.trace_max_new_tokens,
            data=cfg.data,
            n=cfg.n,
            window=cfg.window,
            max_problems=cfg.max_problems,
            # every other eval setting (model, backend, sampling, seed, grader, ...) as this experiment's
            **{f.name: getattr(cfg, f.name) for f in fields(EvalSettings) if f.name not in _OWN_TRACE_SETTINGS},
        )
        run_richer_context(rc, console=console)
    d_ug, d_g = build_sft_sets(rc_dir, cfg.max_examples)
    if not d_ug:
        raise InputError(rc_dir, "no problem has both a correct unguided and a correct guided trace: nothing to train")
    files = {"unguided": out / "data" / "sft_unguided.json", "guided": out / "data" / "sft_guided.json"}
    for name, rows in (("unguided", d_ug), ("guided", d_g)):
        _write_rows(files[name], _alpaca(rows, cfg.system_prompt))
    sets = {"seed": cfg.seed, **cfg.train_overrides}
    models = {"base": cfg.model}
    trained: dict[str, Any] = {}
    for name in ("unguided", "guided"):
        run_dir = out / "train" / name
        trained[name] = train_stage("sft", cfg.model, files[name], run_dir, sets, console)
        models[f"{name}_sft"] = str(run_dir)

    results: dict[str, dict[str, Any]] = {}
    for label, model in models.items():
        results[label] = {}
        for bench in cfg.benchmarks:
            ev = out / "eval" / label / safe_name(bench)
            samples = eval_samples(
                cfg, model=model, benchmark=bench, out=ev, n=cfg.n_eval, limit=cfg.limit, console=console
            )
            stats = sample_stats(samples, cfg.lexicon)
            stats["dir"] = str(ev.relative_to(out))
            results[label][safe_name(bench)] = stats
    summary: dict[str, Any] = {
        "kind": KIND,
        "model": cfg.model,
        "benchmarks": [safe_name(b) for b in cfg.benchmarks],
        "n_eval": cfg.n_eval,
        "lexicon": cfg.lexicon,
        "richer_context": str(rc_dir),
        "datasets": {
            name: {
                "examples": len(rows),
                "problems": [r["problem_id"] for r in rows],
                "mean_tokens": _mean([r["n_tokens"] for r in rows]),
                "E": sample_stats(
                    [Sample(problem_id=r["problem_id"], response=r["output"]) for r in rows], cfg.lexicon
                )["E"]["value"],
                "file": str(files[name].relative_to(out)),
            }
            for name, rows in (("unguided", d_ug), ("guided", d_g))
        },
        "training": {
            name: {k: t.get(k) for k in ("global_step", "training_loss", "rows")} for name, t in trained.items()
        },
        "models": results,
        "table": {m: {b: results[m][b]["score"] for b in results[m]} for m in MODELS},
    }
    summary["config"] = (read_json(out / "manifest.json") or {}).get("config")
    write_json(out / "summary.json", summary)
    inputs = {
        "data": cfg.data if cfg.data and Path(cfg.data).is_file() else None,
        "traces_unguided": rc_dir / "samples" / "none.jsonl",
        "traces_guided": rc_dir / "samples" / "s.jsonl",
        "sft_unguided": files["unguided"],
        "sft_guided": files["guided"],
        **{f"benchmark:{b}": bench_path(b) for b in cfg.benchmarks},
    }
    write_manifest(out, KIND, cfg, inputs, status="complete")
    return summary


def _mean(values: list[Any]) -> float | None:
    v = [x for x in values if x is not None]
    return sum(v) / len(v) if v else None
