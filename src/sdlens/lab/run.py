"""``sdlens lab run``: pretrain the organism, run the paper's three experiments on it, summarise, report.

Run folder (one ``seed-K`` per seed)::

    OUT/lab.json                       the config (a rerun with another config is refused)
    OUT/seed-K/data/{pool,ood}.jsonl   the split (Problem JSONL) and split.json (ids, hashes, disjointness)
    OUT/seed-K/data/pretrain.jsonl     the pretraining corpus (family, prompt, prefix, completion; no OOD problem)
    OUT/seed-K/base/                   the pretrained base model (a normal model folder)
    OUT/seed-K/richer_context/         sdlens experiment richer-context   (Table 1)
    OUT/seed-K/guided_sft/             sdlens experiment guided-sft       (Table 2), traces from richer_context
    OUT/seed-K/coverage/               sdlens experiment coverage         (SDPO vs GRPO curves)
    OUT/seed-K/controls/<name>/        the matched learning-rate controls on the narrowest level (coverage folders)
    OUT/seed-K/mitigations/            with --mitigations: the mitigation presets on one coverage level (issue 10)
    OUT/summary.json  OUT/report.html  OUT/report.md

Every stage is the normal sdlens stage (the eval runner, TRL trainers through ``sdlens.train``, the experiments of
``sdlens.experiments``), each resumable: a rerun reuses the finished base model, eval folders and checkpoints.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sdlens.errors import InputError
from sdlens.lab.config import LabConfig
from sdlens.lab.summary import summarize, summary_markdown
from sdlens.lab.task import TaskConfig, make_splits, write_problems
from sdlens.runfolder import COMPLETE, atomic_path, file_sha256, write_json
from sdlens.train.presets import get_preset, preset_values

__all__ = ["check_resumable", "prepare_data", "run_lab", "run_seed"]


def _say(console: Any, msg: str) -> None:
    if console is not None:
        console.print(msg)


def _done(path: Path) -> dict[str, Any] | None:
    """An experiment folder's summary, if the experiment completed."""
    try:
        manifest = json.loads((path / "manifest.json").read_text())
        summary = json.loads((path / "summary.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return summary if manifest.get("status") == "complete" else None


def _mitigations_done(path: Path, methods: tuple[str, ...]) -> dict[str, Any] | None:
    """The mitigations stage's summary if it completed with every preset of ``methods``; a stage finished before
    presets were added reruns (its finished trainings and evaluations are reused, only the new presets run)."""
    done = _done(path)
    if done is None or not set(methods) <= set(done.get("methods") or []):
        return None
    return done


def prepare_data(cfg: LabConfig, seed: int, data: Path) -> dict[str, Any]:
    """Write the pool / OOD problem files of ``seed`` and a manifest with their ids and hashes."""

    splits = make_splits(TaskConfig(modulus=cfg.modulus, ood_fraction=cfg.ood_fraction, seed=seed))
    pool_ids = {t.id for t in splits.pool}
    ood_ids = {t.id for t in splits.ood}
    if pool_ids & ood_ids:  # by construction impossible; checked because everything downstream relies on it
        raise RuntimeError(f"split overlap: {sorted(pool_ids & ood_ids)[:3]}")
    # the pool file in a seeded random order: richer-context scans it in file order, and sorted (a, b, c) would
    # hand it the problems with the smallest a first
    order = list(splits.pool)
    random.Random(f"organism-pool-order-{seed}").shuffle(order)
    pool = write_problems(data / "pool.jsonl", order, "pool")
    ood = write_problems(data / "ood.jsonl", splits.ood, "ood")
    info = {
        "modulus": cfg.modulus,
        "seed": seed,
        "pool": {"file": str(pool), "problems": len(pool_ids), "sha256": file_sha256(pool)},
        "ood": {"file": str(ood), "problems": len(ood_ids), "sha256": file_sha256(ood)},
        "ood_ids_sha256": hashlib.sha256("\n".join(sorted(ood_ids)).encode()).hexdigest(),
    }
    write_json(data / "split.json", info)
    return {"pool": pool, "ood": ood, "splits": splits, "info": info}


class _Stages:
    """One seed's stages: each one's summary (a finished stage's, read from its folder, else its run's) and its wall
    time in ``times`` (the runs of one key add up)."""

    def __init__(self, console: Any):
        self.console = console
        self.times: dict[str, float] = {}

    def run(
        self, key: str, path: Path, title: str, run: Callable[[], dict[str, Any]], done: Callable = _done
    ) -> dict[str, Any]:
        t = time.perf_counter()
        summary = done(path)
        if summary is None:
            _say(self.console, title)
            summary = run()
        self.times[key] = self.times.get(key, 0.0) + time.perf_counter() - t
        return summary


def _sampling(cfg: LabConfig) -> dict[str, Any]:
    return {
        "preset": "paper-think",
        "temperature": cfg.temperature,
        "top_p": 1.0,
        "top_k": None,
        "max_new_tokens": cfg.max_new_tokens,
    }


def run_seed(cfg: LabConfig, seed: int, out: Path, console: Any = None) -> dict[str, Any]:
    """The whole pipeline for one seed in ``out``; returns the three experiment summaries and timings."""
    from dataclasses import replace

    from sdlens.experiments.coverage import CoverageConfig, run_coverage
    from sdlens.experiments.guided_sft import GuidedSFTConfig, run_guided_sft
    from sdlens.experiments.richer_context import RicherContextConfig, run_richer_context
    from sdlens.lab.pretrain import pretrain

    stages = _Stages(console)
    t = time.perf_counter()
    data = prepare_data(cfg, seed, out / "data")
    pcfg = replace(
        cfg.pretrain,
        corpus=cfg.corpus,
        seed=seed,
        threads=cfg.threads,
    )
    _say(
        console,
        f"[bold]seed {seed}[/bold]: base model ({len(data['splits'].pool)} pool problems, "
        f"{len(data['splits'].ood)} held out)",
    )
    corpus = out / "data" / "pretrain.jsonl"
    base = pretrain(out / "base", data["splits"].pool, cfg.modulus, pcfg, corpus_path=corpus, console=console)
    stages.times["pretrain_s"] = time.perf_counter() - t

    # the pretraining gate's verdict per attempt (an older base model folder has none)
    built = json.loads((base / COMPLETE).read_text())
    gate = [{"seed": a["seed"], **a["gate"]} for a in built.get("attempts", [])]
    # what the three experiments share: the base model, the seed, the sampling and the eval runner's settings
    common = {"model": str(base), "seed": seed, "batch_size": 128, "eval_options": {"threads": 1}, **_sampling(cfg)}

    rc_dir = out / "richer_context"
    rc_config = RicherContextConfig(
        data=str(data["pool"]),
        out=str(rc_dir),
        n=cfg.rc_n,
        window=(1, 4),
        max_problems=cfg.rc_max_problems,
        scan_batch=max(16, cfg.rc_max_problems),
        contexts=cfg.rc_contexts,
        **common,
    )
    title = "[bold]richer context[/bold] (Table 1)"
    rc = stages.run("richer_context_s", rc_dir, title, lambda: run_richer_context(rc_config, console=console))

    gs_dir = out / "guided_sft"
    gs_config = GuidedSFTConfig(
        data=str(data["pool"]),
        out=str(gs_dir),
        benchmarks=[str(data["ood"])],
        n_eval=cfg.n_eval,
        limit=cfg.ood_limit,
        from_richer_context=str(rc_dir),
        system_prompt="",
        train_overrides=_sft_overrides(cfg, seed),
        **common,
    )
    title = "[bold]guided SFT[/bold] (Table 2)"
    gs = stages.run("guided_sft_s", gs_dir, title, lambda: run_guided_sft(gs_config, console=console))

    cov_dir = out / "coverage"
    cov_config = CoverageConfig(
        out=str(cov_dir),
        coverage=list(cfg.coverage),
        pool=str(data["pool"]),
        ood=[str(data["ood"])],
        methods=list(cfg.methods),
        train_overrides=_rl_overrides(cfg),
        method_overrides=_method_overrides(cfg),
        eval_every=cfg.eval_every,
        n_eval=cfg.n_eval,
        limit=cfg.ood_limit,
        **common,
    )
    title = "[bold]coverage[/bold]: " + " vs ".join(cfg.methods)
    cov = stages.run("coverage_s", cov_dir, title, lambda: run_coverage(cov_config, console=console))

    controls: dict[str, Any] = {}
    if cfg.matched_lr:
        level = narrowest(cfg.coverage)
        lrs = _method_overrides(cfg)
        sdpo_lr, grpo_lr = lrs["sdpo-paper"]["learning_rate"], lrs["grpo-paper"]["learning_rate"]
        # each method at the other's learning rate, everything else as in the coverage stage
        swapped = (("grpo_at_sdpo_lr", "grpo-paper", sdpo_lr), ("sdpo_at_grpo_lr", "sdpo-paper", grpo_lr))
        for name, method, lr in swapped:
            c_dir = out / "controls" / name
            c_config = replace(
                cov_config,
                out=str(c_dir),
                coverage=[level],
                methods=[method],
                method_overrides={method: {**lrs[method], "learning_rate": lr}},
            )
            title = f"[bold]control[/bold]: {method} at learning rate {lr:g} on {level}"
            got = stages.run("controls_s", c_dir, title, lambda c=c_config: run_coverage(c, console=console))
            curve = got["curves"][level][method]
            controls[name] = {"level": level, "method": method, "learning_rate": lr, **curve}
            controls[name]["tries"] = _curve_tries(c_dir, curve)

    mit = None
    if cfg.mitigation_methods():
        mit_dir = out / "mitigations"
        # the same sweep as the coverage stage on one level, evaluated at the end only (the comparison is of the
        # last checkpoints); the baselines' curves come from the coverage stage
        mit_config = replace(
            cov_config,
            out=str(mit_dir),
            coverage=[cfg.mitigation_level],
            methods=list(cfg.mitigation_methods()),
            eval_every=cfg.rl_steps,
        )
        mit = stages.run(
            "mitigations_s",
            mit_dir,
            f"[bold]mitigations[/bold] on {cfg.mitigation_level}: " + ", ".join(cfg.mitigation_methods()),
            lambda: run_coverage(mit_config, console=console),
            done=lambda path: _mitigations_done(path, cfg.mitigation_methods()),
        )
    tries = {
        "richer_context": {ctx: _tries(rc_dir / "samples" / f"{ctx}.jsonl") for ctx in ("none", "s")},
        "guided_sft": {
            label: _tries(next(iter(sorted((gs_dir / "eval" / label).glob("*/samples.jsonl"))), None))
            for label in (gs.get("models") or {})
        },
        "coverage": {
            level: {method: _curve_tries(cov_dir, curve) for method, curve in methods.items()}
            for level, methods in (cov.get("curves") or {}).items()
        },
    }
    return {
        "seed": seed,
        "richer_context": rc,
        "guided_sft": gs,
        "coverage": cov,
        "controls": controls,
        "tries": tries,
        "mitigations": mit,
        "gate": gate,
        "split": data["info"],
        "times": {k: round(v, 1) for k, v in stages.times.items()},
    }


def narrowest(levels: tuple[str, ...] | list[str]) -> str:
    """The coverage level with the fewest distinct problems (``1x64`` of ``1x64, 8x8, 64``)."""
    from sdlens.experiments.coverage import parse_level

    parsed = [(parse_level(lvl), lvl) for lvl in levels]
    return min((p[0], lvl) for p, lvl in parsed if p is not None)[1] if any(p for p, _ in parsed) else levels[0]


def _tries(path: Path | None) -> dict[str, Any]:
    """Mean tries (candidates checked) per response in a samples file, with a bootstrap CI over problems (the
    resampling ``sample_stats`` does for E)."""
    import numpy as np

    from sdlens.experiments.common import read_samples
    from sdlens.lab.traces import tries
    from sdlens.metrics import bootstrap_ci

    if path is None or not Path(path).is_file():
        return {"value": None, "ci": None}
    per: dict[str, list[int]] = {}
    for s in read_samples(path):
        per.setdefault(s.problem_id, []).append(tries(s.response))
    if not per:
        return {"value": None, "ci": None}
    rows = np.array([sum(v) / len(v) for v in per.values()])
    if len(rows) < 2:
        return {"value": float(rows.mean()), "ci": None}
    lo, hi = bootstrap_ci(rows, seed=0)
    return {"value": float(rows.mean()), "ci": [float(lo[0]), float(hi[0])]}


def _curve_tries(folder: Path, curve: dict[str, Any]) -> list[dict[str, Any]]:
    """Tries per OOD response at each evaluated step of a coverage curve (the OOD eval folders of its points)."""
    out = []
    for point in curve.get("points") or []:
        ood = [d for k, d in (point.get("dirs") or {}).items() if k.startswith("ood-")]
        out.append(_tries(folder / ood[0] / "samples.jsonl") if len(ood) == 1 else {"value": None, "ci": None})
    return out


# Every training stage of the organism runs on the CPU, in the main process, without a learning-rate warm-up.
_CPU_STAGE = {"warmup_steps": 0, "use_cpu": True, "dataloader_num_workers": 0}


def _sft_overrides(cfg: LabConfig, seed: int) -> dict[str, Any]:
    return {
        "num_train_epochs": cfg.sft_epochs,
        "learning_rate": cfg.sft_lr,
        "per_device_train_batch_size": cfg.sft_batch,
        "gradient_accumulation_steps": 1,
        "lr_scheduler_type": "constant",
        "max_length": 512,
        "save_strategy": "no",
        "seed": seed,
        **_CPU_STAGE,
    }


def _method_overrides(cfg: LabConfig) -> dict[str, dict[str, Any]]:
    # The paper distils over the student's top 100 of a ~150k-token vocabulary; the organism has under 100 tokens,
    # so top 100 would be every token and the tail term would vanish. Top 16 keeps "a few likely tokens + tail".
    # Each method keeps its preset's learning rate times one common factor (the paper's SDPO : GRPO ratio of 10).

    out: dict[str, dict[str, Any]] = {}
    for m in cfg.all_methods():
        out[m] = {"learning_rate": preset_values(m)["trl.learning_rate"] * cfg.rl_lr_scale}
        if get_preset(m).algo == "sdpo":
            out[m]["distillation_topk"] = cfg.distill_topk
    return out


def _rl_overrides(cfg: LabConfig) -> dict[str, Any]:
    # The paper's batch shape scaled down: P prompts x G rollouts per rollout batch, 2 optimizer steps each; no
    # warm-up (the paper's 10 warm-up steps are a tenth of its run); the token budget of every other stage.
    return {
        "max_steps": cfg.rl_steps,
        "prompts_per_step": cfg.rl_prompts,
        "num_generations": cfg.rl_generations,
        "mini_batches_per_step": 2,
        "per_device_train_batch_size": cfg.rl_generations,
        "max_completion_length": cfg.max_new_tokens,
        "max_prompt_tokens": 256,
        "reward_workers": 1,
        **_CPU_STAGE,
    }


def _flat(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def check_resumable(out: Path, cfg: LabConfig) -> None:
    """Refuse a folder that holds a lab run with other settings (its stages would not match this config); the
    error names the first settings that differ (nested ones dotted, e.g. ``pretrain.steps``)."""
    prev = out / "lab.json"
    if not prev.is_file():
        return
    old = _flat(json.loads(prev.read_text()))
    want = _flat(json.loads(json.dumps(cfg.to_dict(), default=str)))
    # a setting added after the folder was written counts as its default (older runs stay resumable); one removed
    # since (e.g. pretrain.model.seed, always equal to pretrain.seed) is no longer a setting
    defaults = _flat(json.loads(json.dumps(LabConfig().to_dict(), default=str)))
    # `mitigations` only adds a stage of its own: a finished run folder can be rerun with it (or without it)
    diff = [k for k in want if k != "mitigations" and old.get(k, defaults.get(k)) != want[k]]
    if diff:
        raise InputError(out, f"holds a lab run with other settings ({', '.join(diff[:4])}); use another --out")


def run_lab(cfg: LabConfig, console: Any = None) -> dict[str, Any]:
    """Run (or resume) every seed, then write ``summary.json`` and the report; returns the summary."""
    import torch

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    check_resumable(out, cfg)
    write_json(out / "lab.json", cfg.to_dict())
    torch.set_num_threads(cfg.threads)
    t0 = time.perf_counter()
    seeds = [run_seed(cfg, s, out / f"seed-{s}", console) for s in range(cfg.seeds)]
    summary = summarize(cfg, seeds)
    summary["wall_s"] = round(time.perf_counter() - t0, 1)
    write_json(out / "summary.json", summary)

    with atomic_path(out / "summary.md") as tmp:
        tmp.write_text(summary_markdown(summary))
    try:
        from sdlens.report import build_report
    except ImportError:
        build_report = None
    if build_report is not None:
        try:
            summary["report"] = str(build_report(out))
        except Exception as e:  # the numbers are written; a report failure must not lose them
            summary["report_error"] = f"{type(e).__name__}: {e}"
        write_json(out / "summary.json", summary)
    return summary


def config_dict(cfg: LabConfig) -> dict[str, Any]:
    return asdict(cfg)
