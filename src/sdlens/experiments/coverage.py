"""Sections 5-6 of the paper: SDPO vs GRPO as task coverage grows, in-domain and out of domain.

For each coverage level (``1x64`` = 1 problem x 64 copies, ``8x8``, ``64`` = 64 distinct problems, ...) the
training set is the shipped ``seen_<level>.parquet`` (``sdlens benchmarks list``) or, with ``pool``, built
from a problem file: the ``k`` problems with the smallest ``blake2b(seed, id)`` (so the levels nest like the paper's
``1x64 ⊂ 8x8 ⊂ 64``), each repeated ``m`` times, with a manifest of the chosen ids and their hash. A level may also
be a path to a training file. Each method (a training preset: ``sdpo-paper``, ``grpo-paper``...) trains on it,
saving a checkpoint every ``eval_every`` optimizer steps; the base model (step 0) and every checkpoint are evaluated
on the in-domain set (the level's distinct problems, or ``in_domain``) and on each ``ood`` benchmark.

Run folder::

    OUT/manifest.json  OUT/summary.json
    OUT/data/<level>.jsonl  OUT/data/<level>.in_domain.jsonl  OUT/data/<level>.manifest.json
    OUT/base/<ood-name|in_domain-level>/               step-0 eval folders (shared by every method)
    OUT/<level>/<method>/train/                        sdlens train folder (checkpoint-N/, final model)
    OUT/<level>/<method>/eval/step-<N>/<eval set>/     eval folders
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from sdlens.errors import InputError
from sdlens.experiments.common import (
    bench_path,
    eval_samples,
    safe_name,
    sample_stats,
    write_manifest,
)
from sdlens.experiments.config import CoverageConfig
from sdlens.experiments.guided_sft import train_stage
from sdlens.runfolder import file_sha256, read_json, write_json
from sdlens.schema import Problem, Sample, write_jsonl

__all__ = ["CoverageConfig", "build_coverage_set", "parse_level", "run_coverage", "shipped_level"]

KIND = "coverage"
_LEVEL = re.compile(r"^(\d+)(?:x(\d+))?$")
_CKPT = re.compile(r"^checkpoint-(\d+)$")


def parse_level(level: str) -> tuple[int, int] | None:
    """``"8x8"`` -> (8, 8), ``"64"`` -> (64, 1); ``None`` for anything else (a file path)."""
    m = _LEVEL.match(level.strip())
    if not m:
        return None
    k, copies = int(m.group(1)), int(m.group(2) or 1)
    if k < 1 or copies < 1:
        raise InputError(None, f"coverage level {level!r}: counts must be >= 1", field="coverage")
    return k, copies


def shipped_level(level: str) -> Path | None:
    """The paper's ``seen_<level>.parquet``: from ``$SDLENS_DATA_DIR`` when it has one, else the shipped copy."""
    from sdlens.benchmarks import resolve_benchmark, shipped_path

    if shipped_path(f"seen_{level}") is None:
        return None
    return resolve_benchmark(f"seen_{level}")[1]


def _rank(seed: int, pid: str) -> bytes:
    return hashlib.blake2b(f"{seed}\x00{pid}".encode(), digest_size=16).digest()


def build_coverage_set(pool: list[Problem], k: int, copies: int, seed: int) -> tuple[list[Problem], list[Problem]]:
    """``(training rows, distinct problems)``: the ``k`` pool problems ranked first by ``blake2b(seed, id)``, each
    ``copies`` times (round-robin, so every prefix of the rows covers the problems evenly)."""
    if k > len(pool):
        raise InputError(None, f"coverage needs {k} distinct problems, the pool has {len(pool)}", field="coverage")
    chosen = sorted(pool, key=lambda p: _rank(seed, p.id))[:k]
    return [p for _ in range(copies) for p in chosen], chosen


def _train_rows(problems: list[Problem]) -> list[dict[str, Any]]:
    return [
        {"prompt": p.messages, "answer": p.answer, "problem_id": p.id, "data_source": p.source or ""} for p in problems
    ]


def _prepare_level(cfg: CoverageConfig, level: str, out: Path) -> dict[str, Any]:
    """The training file and in-domain file of a level, with its manifest (``OUT/data``)."""
    from sdlens.benchmarks import load_benchmark
    from sdlens.io import iter_problems

    data = out / "data"
    parsed = parse_level(level)
    name = level if parsed else safe_name(level)
    info: dict[str, Any] = {"level": level, "name": name}
    if parsed and cfg.pool:
        bench = load_benchmark(cfg.pool)
        rows, distinct = build_coverage_set(bench.problems, *parsed, seed=cfg.seed)
        train = data / f"{name}.jsonl"
        write_jsonl(train, _train_rows(rows))
        n_rows = len(rows)
        ids = [p.id for p in distinct]
        info.update(
            source="pool",
            pool=str(bench.path),
            pool_sha256=bench.sha256,
            seed=cfg.seed,
            problem_ids=ids,
            problem_ids_sha256=hashlib.sha256("\n".join(ids).encode()).hexdigest(),
        )
    else:
        path = shipped_level(level) if parsed else Path(level)
        if path is None or not path.is_file():
            what = f"no shipped seen_{level}.parquet; pass --pool" if parsed else "no such file"
            raise InputError(level, what, field="coverage")
        train = path
        every = list(iter_problems(path))
        n_rows = len(every)
        distinct = list({p.id: p for p in every}.values())
        info.update(source="file", problem_ids=[p.id for p in distinct])
    in_domain = data / f"{name}.in_domain.jsonl"
    write_jsonl(in_domain, distinct)
    info.update(train=str(train), train_sha256=file_sha256(Path(train)), in_domain=str(in_domain))
    info["rows"] = n_rows
    write_json(data / f"{name}.manifest.json", info)
    return info


def _checkpoints(train_dir: Path, final_step: int | None) -> list[tuple[int, Path]]:
    found = []
    if train_dir.is_dir():
        for d in train_dir.iterdir():
            m = _CKPT.match(d.name)
            if m and (d / "trainer_state.json").is_file():
                found.append((int(m.group(1)), d))
    found.sort()
    if final_step is not None and (train_dir / "config.json").is_file() and final_step not in {s for s, _ in found}:
        found.append((final_step, train_dir))
    return found


def _eval_sets(cfg: CoverageConfig, info: dict[str, Any]) -> dict[str, str]:
    sets = {"in_domain": cfg.in_domain or info["in_domain"]}
    for spec in cfg.ood:
        sets[f"ood-{safe_name(spec)}"] = spec
    return sets


def _evaluate(cfg: CoverageConfig, model: str, sets: dict[str, tuple[str, Path]], console: Any):
    """Evaluate ``model`` on each ``name -> (spec, eval folder)``; returns the samples per name."""
    samples: dict[str, list[Sample]] = {}
    for name, (spec, ev) in sets.items():
        samples[name] = eval_samples(
            cfg, model=model, benchmark=spec, out=ev, n=cfg.n_eval, limit=cfg.limit, console=console
        )
    return samples


def _point(cfg: CoverageConfig, step: int, samples: dict[str, list[Sample]], dirs: dict[str, Path], out: Path) -> dict:
    ood_names = [k for k in samples if k.startswith("ood-")]
    # pooled OOD: problems of different sets stay distinct problems
    pooled = [s for k in ood_names for s in _prefixed(samples[k], k)]
    ind = sample_stats(samples["in_domain"], cfg.lexicon)
    ood = sample_stats(pooled, cfg.lexicon) if pooled else {}
    return {
        "step": step,
        "in_domain_acc": ind.get("score"),
        "ood_acc": ood.get("score"),
        "E": ood.get("E"),
        "length": ood.get("length"),
        "E_per_1k": ood.get("E_per_1k"),
        "in_domain_E": ind.get("E"),
        "in_domain_length": ind.get("length"),
        "ood": {k.removeprefix("ood-"): sample_stats(samples[k], cfg.lexicon)["score"] for k in ood_names},
        "per_word": ood.get("per_word"),
        "dirs": {k: str(d.relative_to(out)) for k, d in dirs.items()},
    }


def _prefixed(samples: list[Sample], prefix: str) -> list[Sample]:
    from dataclasses import replace

    return [replace(s, problem_id=f"{prefix}/{s.problem_id}") for s in samples]


SERIES = ("in_domain_acc", "ood_acc", "E", "length", "E_per_1k", "in_domain_E", "in_domain_length")


def run_coverage(cfg: CoverageConfig, console: Any = None) -> dict[str, Any]:
    """Run (or resume) the coverage sweep; returns the summary also written to ``OUT/summary.json``.

    Summary keys: ``kind`` ("coverage"), ``levels`` {level: data manifest}, ``curves`` {level: {method: {``steps``,
    ``in_domain_acc``, ``ood_acc``, ``E``, ``length``, ``E_per_1k``, ``in_domain_E``, ``in_domain_length`` (lists
    over steps of {``value``, ``ci``}; E and length are on the OOD responses), ``points`` (the same per step with
    per-set OOD scores and hedge words), ``training``}}}, ``ood``, ``methods``. A CI is ``None`` with one problem."""
    cfg.check()
    out = Path(cfg.out)
    inputs: dict[str, Any] = {"pool": cfg.pool, "in_domain": cfg.in_domain and bench_path(cfg.in_domain)}
    inputs.update({f"ood:{o}": bench_path(o) for o in cfg.ood})
    write_manifest(out, KIND, cfg, inputs, status="running")
    levels = {lvl: _prepare_level(cfg, lvl, out) for lvl in cfg.coverage}
    inputs.update({f"train:{lvl}": info["train"] for lvl, info in levels.items()})
    # the chosen problems of each level, for anyone rebuilding the sets
    chosen = {k: {"problem_ids": v["problem_ids"], "source": v["source"]} for k, v in levels.items()}
    write_manifest(out, KIND, cfg, inputs, status="running", levels=chosen)
    curves: dict[str, dict[str, Any]] = {}
    for lvl, info in levels.items():
        sets = _eval_sets(cfg, info)
        # step 0 is the base model: its OOD folders are shared by every level, its in-domain one is per level
        base_dirs = {k: out / "base" / (k if k.startswith("ood-") else f"in_domain-{info['name']}") for k in sets}
        base = _evaluate(cfg, cfg.model, {k: (sets[k], base_dirs[k]) for k in sets}, console)
        curves[lvl] = {}
        for method in cfg.methods:
            mdir = out / info["name"] / method
            # one grader for training and evaluation unless asked otherwise (the paper's scripts use two)
            reward = cfg.reward or cfg.grader
            sets_train = {
                "seed": cfg.seed,
                "reward": reward,
                **cfg.train_overrides,
                **cfg.method_overrides.get(method, {}),
            }
            if cfg.eval_every is not None:
                sets_train.update(save_strategy="steps", save_steps=cfg.eval_every)
            trained = train_stage(method, cfg.model, info["train"], mdir / "train", sets_train, console)
            points = [_point(cfg, 0, base, base_dirs, out)]
            for step, ckpt in _checkpoints(mdir / "train", trained.get("global_step")):
                dirs = {k: mdir / "eval" / f"step-{step}" / k for k in sets}
                got = _evaluate(cfg, str(ckpt), {k: (sets[k], dirs[k]) for k in sets}, console)
                points.append(_point(cfg, step, got, dirs, out))
            curves[lvl][method] = {
                "steps": [p["step"] for p in points],
                **{key: [p[key] for p in points] for key in SERIES},
                "points": points,
                "training": {k: trained.get(k) for k in ("global_step", "training_loss", "rows", "train_runtime_s")},
            }
    summary = {
        "kind": KIND,
        "model": cfg.model,
        "methods": list(cfg.methods),
        "coverage": list(cfg.coverage),
        "ood": [safe_name(o) for o in cfg.ood],
        "n_eval": cfg.n_eval,
        "lexicon": cfg.lexicon,
        "levels": levels,
        "curves": curves,
        "config": (read_json(out / "manifest.json") or {}).get("config"),
    }
    write_json(out / "summary.json", summary)
    write_manifest(out, KIND, cfg, inputs, status="complete")
    return summary
