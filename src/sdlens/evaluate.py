"""The resumable eval runner behind ``sdlens eval``: benchmark -> generate -> grade -> count -> metrics.

Output folder (``EvalConfig.out``):

- ``samples.jsonl``: one graded :class:`~sdlens.schema.Sample` per line, appended and flushed as each chunk of
  problems finishes. A killed run (even SIGKILL, even mid-line) loses at most the chunk in flight: on rerun the torn
  last line is cut, the samples present are kept, and only missing ones are generated and written. No duplicates.
- ``metrics.json``: avg@n, pass@k, maj@k, any-correct@n with bootstrap CIs over problems (:mod:`sdlens.metrics`),
  response / thinking lengths, E per response (the paper's counter) with its CI, boxed and truncated shares.
  It holds nothing that depends on timing, so a resumed run writes the same file as an uninterrupted one.
- ``manifest.json``: the run's identity (model, backend, benchmark file hash, sampling, few-shot, seed, grader,
  dtype, device, tensor-parallel size, engine version),
  status, library versions, and one entry per session (start, end, new samples, tokens/s).

Determinism: every sample has its own seed (:func:`sdlens.generation.sample_seed` of run seed, problem id and
index). Work is cut into fixed chunks of consecutive problems (``batch_size // n`` problems each), and a chunk with
any sample missing is regenerated whole, so every chunk is always generated with the same batch composition: a
resumed run's samples equal an uninterrupted run's, bit for bit on the same machine and settings. Changing ``n``,
``--limit`` or ``--batch-size`` between runs keeps the samples already written (they are still valid draws).

A folder that holds a run with other settings (another model, sampling, seed, data file...) is refused with one
line unless ``overwrite`` is set.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdlens.epistemic.lexicon import load_lexicon
from sdlens.epistemic.segment import split_thinking
from sdlens.errors import InputError
from sdlens.eval_config import EvalConfig
from sdlens.generation import make_backend
from sdlens.generation.base import GenRequest, GenResult, SamplingConfig, sample_seed
from sdlens.io import read_records
from sdlens.models import resolve_model
from sdlens.runfolder import engine_version, hold_folder, library_versions, read_json, write_json
from sdlens.schema import JsonlWriter, Problem, Sample

__all__ = ["EvalConfig", "EvalResult", "default_out_dir", "run_eval"]

# what to do about a run folder whose manifest cannot be read
_MANIFEST_HINT = "; use --overwrite or another --out"


@dataclass
class EvalResult:
    out: Path
    metrics: dict[str, Any]
    new_samples: int
    resumed_samples: int
    wall_s: float
    generated_tokens: int
    generation_s: float = 0.0
    manifest: dict[str, Any] = field(default_factory=dict)
    plan: dict[str, Any] | None = None  # set by a dry run

    @property
    def tokens_per_s(self) -> float | None:
        """Generated tokens per second of generation (grading and writing included, model loading not)."""
        return self.generated_tokens / self.generation_s if self.generation_s > 0 and self.new_samples else None


def default_out_dir(cfg: EvalConfig) -> Path:
    model = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(cfg.model).name if Path(cfg.model).exists() else cfg.model)
    bench = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(cfg.benchmark).stem)
    return Path("runs") / "eval" / f"{model}-{bench}-{cfg.preset}"


def _identity(cfg: EvalConfig, sampling: SamplingConfig, bench_name: str, sha: str) -> dict[str, Any]:
    """What must match for samples already in the folder to be reused."""
    s = sampling.to_dict()
    for k in ("n", "preset"):
        s.pop(k)
    return {
        "model": cfg.model,
        "backend": cfg.backend,
        "benchmark": bench_name,
        "data_sha256": sha,
        "sampling": s,
        "few_shot": cfg.few_shot,
        "grader": cfg.grader,
        "prompt": "paper",
        # numerics: samples drawn at another precision, device, sharding or engine release are another run
        "engine": {
            "dtype": cfg.dtype,
            "device": cfg.device,
            "tensor_parallel_size": cfg.tensor_parallel_size,
            "version": engine_version(cfg.backend),
        },
    }


def _diff(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            keys += _diff(va, vb, f"{prefix}{k}.")
        elif va != vb:
            keys.append(f"{prefix}{k} {va!r} -> {vb!r}")
    return keys


# ---------------------------------------------------------------- building samples


class _SampleBuilder:
    """Turns backend results into Samples: the think / answer split, token counts, epistemic counts."""

    def __init__(self, backend: Any, sampling: SamplingConfig, run_seed: int, save_logprobs: bool):
        self.backend = backend
        self.tokenizer = getattr(backend, "tokenizer", None)
        self.sampling = sampling
        self.run_seed = run_seed
        self.save_logprobs = save_logprobs
        self.lexicon = load_lexicon("paper")
        self._tok_counter = self._counter()

    def _counter(self) -> Callable[[list[str]], list[int]] | None:
        tok = self.tokenizer
        if tok is None:
            return None

        def count(texts: list[str]) -> list[int]:
            if not texts:
                return []
            return [len(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"]]

        return count

    def build(self, problems: list[Problem], reqs: list[GenRequest], results: list[GenResult]) -> list[Sample]:
        from sdlens.epistemic import count_texts

        by_id = {p.id: p for p in problems}
        texts = [r.text for r in results]
        splits = [split_thinking(t) for t in texts]
        if self._tok_counter is not None:
            n_tokens: list[int | None] = list(self._tok_counter(texts))
            n_think: list[int | None] = list(self._tok_counter([th for th, _ in splits]))
        else:
            n_tokens = [r.n_generated for r in results]
            n_think = [None] * len(results)
        epi = count_texts(texts, self.lexicon).totals
        base = self.sampling.to_dict()
        out = []
        for j, (req, res) in enumerate(zip(reqs, results, strict=True)):
            pid, index = req.key
            p = by_id[pid]
            meta: dict[str, Any] = {"epistemic": {"paper": int(epi[j])}, "n_generated_tokens": res.n_generated}
            if p.meta.get("few_shot"):
                meta["few_shot"] = p.meta["few_shot"]
            if res.logprobs is not None:
                meta["logprob_sum"] = float(sum(res.logprobs))
                meta["logprob_mean"] = float(sum(res.logprobs) / len(res.logprobs)) if res.logprobs else None
                if self.save_logprobs:
                    meta["logprobs"] = [round(x, 5) for x in res.logprobs]
            thinking, answer_text = splits[j]
            out.append(
                Sample(
                    problem_id=pid,
                    index=index,
                    response=res.text,
                    thinking=thinking,
                    answer_text=answer_text,
                    n_tokens=n_tokens[j],
                    n_thinking_tokens=n_think[j] if thinking or n_think[j] is None else 0,
                    finish_reason=res.finish_reason,
                    model=self.backend.model_name,
                    sampling={**base, "seed": req.seed, "run_seed": self.run_seed},
                    answer=p.answer,
                    source=p.source,
                    meta=meta,
                )
            )
        return out


# ---------------------------------------------------------------- metrics


def eval_metrics(samples: list[Sample], *, n: int, benchmark: str, model: str) -> dict[str, Any]:
    """The metrics.json content (deterministic: bootstrap seed 0)."""
    import numpy as np

    from sdlens.metrics import compute_metrics
    from sdlens.stats import bootstrap_ci, per_problem_sums

    report = compute_metrics(samples, resamples=1000, seed=0).to_dict()
    e_all = [(s.meta.get("epistemic") or {}).get("paper", 0) for s in samples]
    # per problem: hedges, samples, correct samples
    per_response = np.array([[e, 1, bool(s.correct)] for e, s in zip(e_all, samples, strict=True)], dtype=float)
    order, sums = per_problem_sums([s.problem_id for s in samples], per_response)
    lo, hi = bootstrap_ci(sums[:, :1] / sums[:, 1:2], resamples=1000, seed=0)
    return {
        "benchmark": benchmark,
        "model": model,
        "n": n,
        "problems": report["n_problems"],
        "samples": report["n_samples"],
        "metrics": report["metrics"],
        "epistemic": {
            "lexicon": "paper",
            "E_per_response": {"value": float(np.mean(e_all)), "ci": [float(lo[0]), float(hi[0])]},
            "ci_unit": "problem (mean per problem, bootstrapped)",
            "responses_with_any": float(np.mean([e > 0 for e in e_all])),
        },
        "lengths": report["lengths"],
        "boxed_fraction": float(np.mean([s.extracted is not None for s in samples])),
        "per_problem": {pid: [int(sums[j, 2]), int(sums[j, 1])] for pid, j in order.items()},
        "warnings": report["warnings"],
        "bootstrap": report["bootstrap"],
    }


# ---------------------------------------------------------------- the runner


def _chunks(problems: list[Problem], per_chunk: int) -> list[list[Problem]]:
    return [problems[i : i + per_chunk] for i in range(0, len(problems), per_chunk)]


def run_eval(
    cfg: EvalConfig,
    *,
    console: Any = None,
    progress: bool = True,
    backend: Any = None,
    on_chunk: Callable[[int], None] | None = None,
) -> EvalResult:
    """Run (or resume) an evaluation; returns the metrics. ``backend`` may be passed in already built (it must
    match ``cfg.backend`` / ``cfg.model``). ``on_chunk(k)`` is called after each chunk's ``k`` samples are written.
    Raises :class:`InputError` for bad input (unknown model / benchmark, unreachable server, ...)."""
    from rich.console import Console

    from sdlens.benchmarks import load_benchmark
    from sdlens.grading import get_grader

    console = console or Console(stderr=True)
    t_start = time.time()
    sampling = cfg.sampling()
    bench = load_benchmark(cfg.benchmark, data_dir=cfg.data_dir, limit=cfg.limit, few_shot=cfg.few_shot)
    out = Path(cfg.out) if cfg.out else default_out_dir(cfg)
    identity = _identity(cfg, sampling, bench.name, bench.sha256)
    try:
        grader = get_grader(cfg.grader)
    except ValueError as e:
        raise InputError(None, str(e), field="grader") from None

    if cfg.dry_run:
        return _dry_run(cfg, sampling, bench, out, identity)
    if backend is None and cfg.backend in ("transformers", "vllm"):
        resolve_model(cfg.model, build=False)  # an unknown model fails here, before the folder is touched
    out.mkdir(parents=True, exist_ok=True)
    lock = hold_folder(out, "another sdlens eval")
    try:
        return _run_locked(cfg, console, progress, backend, on_chunk, sampling, bench, out, identity, grader, t_start)
    finally:
        lock.close()


def _dry_run(cfg: EvalConfig, sampling: SamplingConfig, bench: Any, out: Path, identity: dict) -> EvalResult:
    """What a run would do, read-only: no model is loaded and nothing is written."""
    n = sampling.n
    wanted = {(p.id, i) for p in bench.problems for i in range(n)}
    present: set[tuple[str, int]] = set()
    path = out / "samples.jsonl"
    if path.exists():
        for line in path.read_bytes().splitlines():
            with contextlib.suppress(ValueError, KeyError, TypeError):
                d = json.loads(line)
                present.add((str(d["problem_id"]), int(d["index"])))
    manifest = read_json(out / "manifest.json", hint=_MANIFEST_HINT)
    per_chunk = max(1, cfg.rows_per_chunk() // n)
    chunks = [
        c for c in _chunks(bench.problems, per_chunk) if any((p.id, i) not in present for p in c for i in range(n))
    ]
    plan = {
        "model": cfg.model,
        "backend": cfg.backend,
        "benchmark": bench.describe(),
        "sampling": sampling.to_dict(),
        "few_shot": cfg.few_shot,
        "out": str(out),
        "samples_wanted": len(wanted),
        "samples_present": len(wanted & present),
        "chunks_to_run": len(chunks),
        "problems_per_chunk": per_chunk,
        "same_run": None if manifest is None else manifest.get("identity") == identity,
    }
    return EvalResult(
        out=out,
        metrics={},
        new_samples=0,
        resumed_samples=len(wanted & present),
        wall_s=0.0,
        generated_tokens=0,
        plan=plan,
    )


def _run_locked(cfg, console, progress, backend, on_chunk, sampling, bench, out, identity, grader, t_start):
    from sdlens.grading import grade_samples

    samples_path, metrics_path, manifest_path = out / "samples.jsonl", out / "metrics.json", out / "manifest.json"
    manifest = read_json(manifest_path, hint=_MANIFEST_HINT)
    has_samples = samples_path.exists() and samples_path.stat().st_size > 0
    if has_samples and (manifest is None or manifest.get("identity") != identity):
        if not cfg.overwrite:
            what = "; ".join(_diff(manifest.get("identity", {}), identity)[:4]) if manifest else "no manifest.json"
            raise InputError(out, f"holds another run ({what}); use --overwrite or another --out", field="out")
        for p in (samples_path, metrics_path, manifest_path):
            p.unlink(missing_ok=True)
        manifest = None
    elif manifest is not None and manifest.get("identity") != identity:
        manifest = None  # a run that never wrote a sample: nothing to keep
    out.mkdir(parents=True, exist_ok=True)

    n = sampling.n
    wanted = {(p.id, i) for p in bench.problems for i in range(n)}
    writer = JsonlWriter(samples_path)  # cuts a torn last line left by a killed run
    session: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "argv": sys.argv[1:]}
    written = False
    own_backend = False
    try:
        have: set[tuple[str, int]] = set()
        if samples_path.stat().st_size:
            for s in read_records(samples_path):
                have.add((s.problem_id, s.index))
        resumed = len(wanted & have)
        per_chunk = max(1, cfg.rows_per_chunk() // n)
        todo = [
            c for c in _chunks(bench.problems, per_chunk) if any((p.id, i) not in have for p in c for i in range(n))
        ]
        if todo and backend is None:  # built before anything is written: a bad model / server leaves no trace
            own_backend = True

            with console.status(f"loading {cfg.model} ({cfg.backend})"):
                backend = make_backend(cfg.backend, cfg.model, **cfg.backend_options())
        manifest = manifest or {"created": session["started"], "identity": identity, "sessions": []}
        manifest.update(
            {
                "status": "running",
                "out": str(out),
                "data": bench.describe(),
                "sampling": sampling.to_dict(),
                "n": n,
                "limit": cfg.limit,
                "few_shot": cfg.few_shot,
                "grader": cfg.grader,
                "versions": library_versions(),
            }
        )
        manifest.setdefault("model", {"spec": cfg.model})
        if todo:
            ref = getattr(backend, "ref", None)
            manifest["model"] = {
                "spec": cfg.model,
                **(ref.to_dict() if ref is not None else {}),
                "served_as": backend.model_name,
            }
            manifest["backend"] = backend.info()
        manifest["sessions"].append(session)
        write_json(manifest_path, manifest)
        written = True

        new = 0
        gen_tokens = 0
        t_gen = 0.0
        if todo:
            builder = _SampleBuilder(backend, sampling, cfg.seed, cfg.save_logprobs)
            want_lp = True if cfg.backend in ("transformers", "vllm") else cfg.save_logprobs
            total = len(wanted)
            with _progress(console, progress) as bar:
                task = bar.add_task(f"{bench.name} x{n}", total=total, completed=resumed, tps="")
                t0 = time.perf_counter()
                for chunk in todo:
                    reqs = [
                        GenRequest(p.messages, seed=sample_seed(cfg.seed, p.id, i), key=(p.id, i))
                        for p in chunk
                        for i in range(n)
                    ]
                    results = backend.generate(reqs, sampling, logprobs=want_lp)
                    missing = [(q, r) for q, r in zip(reqs, results, strict=True) if q.key not in have]
                    samples = builder.build(chunk, [q for q, _ in missing], [r for _, r in missing])
                    for s in grade_samples(samples, grader):
                        writer.write(s)
                        have.add((s.problem_id, s.index))
                    new += len(samples)
                    gen_tokens += sum(r.n_generated or 0 for r in results)
                    t_gen = time.perf_counter() - t0
                    bar.update(task, advance=len(samples), tps=f"{gen_tokens / t_gen:,.0f} tok/s" if t_gen else "")
                    if on_chunk:
                        on_chunk(len(samples))
            manifest["backend"] = backend.info()
    except BaseException:
        session.update({"finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "status": "interrupted"})
        if written and manifest is not None:
            manifest["status"] = "interrupted"
            with contextlib.suppress(Exception):
                write_json(manifest_path, manifest)
        raise
    finally:
        writer.close()
        if own_backend and backend is not None:
            with contextlib.suppress(Exception):
                backend.close()

    final = [s for s in read_records(samples_path) if (s.problem_id, s.index) in wanted]
    order = {p.id: k for k, p in enumerate(bench.problems)}
    final.sort(key=lambda s: (order[s.problem_id], s.index))
    if len(final) != len(wanted):
        raise InputError(
            samples_path, f"{len(wanted) - len(final)} samples missing after the run (duplicates or foreign lines?)"
        )
    metrics = eval_metrics(final, n=n, benchmark=bench.name, model=final[0].model or cfg.model)
    write_json(metrics_path, metrics)
    wall = time.time() - t_start
    session.update(
        {
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "status": "complete",
            "new_samples": new,
            "resumed_samples": resumed,
            "generated_tokens": gen_tokens,
            "generation_s": round(t_gen, 2),
            "wall_s": round(wall, 2),
            "tokens_per_s": round(gen_tokens / t_gen, 1) if t_gen else None,
        }
    )
    manifest["status"] = "complete"
    manifest["updated"] = session["finished"]
    write_json(manifest_path, manifest)
    return EvalResult(
        out=out,
        metrics=metrics,
        new_samples=new,
        resumed_samples=resumed,
        wall_s=wall,
        generated_tokens=gen_tokens,
        generation_s=t_gen,
        manifest=manifest,
    )


@contextlib.contextmanager
def _progress(console: Any, enabled: bool):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("samples"),
        TextColumn("{task.fields[tps]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        disable=not enabled,
        transient=False,
    )
    with bar:
        yield bar
