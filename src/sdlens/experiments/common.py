"""What every experiment shares: sampling settings, eval stages, run manifests, and the per-context statistics.

Every statistic is over problems: a problem's value is the mean over its samples, the reported value the mean over
problems (the paper's macro average, docs/paper.md 3.3), and the 95% CI a percentile bootstrap over problems
(:func:`sdlens.stats.bootstrap_ci`). E per 1k tokens is a ratio of sums (hedges / tokens, as ``sdlens compare``
reports it), bootstrapped over problems with the same resampling.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sdlens.epistemic.lexicon import load_lexicon
from sdlens.errors import InputError
from sdlens.experiments.config import EvalSettings, SamplingFields
from sdlens.io import read_records
from sdlens.runfolder import file_sha256, library_versions, read_json, write_json
from sdlens.schema import Sample
from sdlens.stats import bootstrap_ci, bootstrap_sums, per_problem_sums, percentile_ci

__all__ = [
    "SamplingFields",
    "bench_path",
    "eval_samples",
    "eval_stage",
    "file_hash",
    "read_samples",
    "safe_name",
    "sample_stats",
    "write_manifest",
]

RESAMPLES = 1000


def safe_name(text: str) -> str:
    """A file-name-safe label: a benchmark spec's stem or name."""
    stem = Path(text).stem if ("/" in text or "." in text) else text
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem) or "data"


def file_hash(path: str | Path) -> str | None:
    p = Path(path)
    return file_sha256(p) if p.is_file() else None


def bench_path(spec: str) -> str | None:
    """The file a benchmark spec names (for the manifest's hashes), or ``None`` if it names none here."""
    from sdlens.benchmarks import resolve_benchmark

    try:
        return str(resolve_benchmark(spec, None)[1])
    except InputError:
        return None


def config_dict(cfg: Any) -> dict[str, Any]:
    return asdict(cfg) if is_dataclass(cfg) else dict(cfg)


def write_manifest(out: Path, kind: str, cfg: Any, data: dict[str, str | Path | None], **extra: Any) -> dict:
    """``OUT/manifest.json``: the config, library versions, seeds, and the SHA-256 of every input file.

    Kept across reruns: ``created`` and the list of ``sessions`` grow, the rest is the latest."""
    path = out / "manifest.json"
    old = read_json(path) or {}
    conf = config_dict(cfg)
    manifest = {
        **old,
        "kind": kind,
        "created": old.get("created") or time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": conf,
        "seeds": {"run": conf.get("seed"), "bootstrap": 0, "per_sample": "sample_seed(run seed, problem id, index)"},
        "data": {k: {"path": str(v), "sha256": file_hash(v)} for k, v in data.items() if v is not None},
        "versions": library_versions(),
        "sessions": [*old.get("sessions", []), time.strftime("%Y-%m-%dT%H:%M:%S%z")],
        **extra,
    }
    out.mkdir(parents=True, exist_ok=True)
    write_json(path, manifest)
    return manifest


def read_samples(path: str | Path) -> list[Sample]:
    return list(read_records(Path(path)))


# ---------------------------------------------------------------- eval stages

# the experiment settings every eval stage takes over unchanged (the same names in EvalConfig)
_STAGE_SETTINGS = ("backend", "preset", "temperature", "top_p", "top_k", "thinking", "seed", "batch_size", "grader")


def eval_stage(
    settings: EvalSettings,
    *,
    benchmark: str,
    out: Path,
    n: int,
    model: str | None = None,
    limit: int | None = None,
    console: Any = None,
    overwrite: bool = False,
):
    """Run (or resume) one :func:`sdlens.evaluate.run_eval` with an experiment's eval settings (``model`` overrides
    theirs, e.g. a trained checkpoint) and return its :class:`EvalResult`.

    ``overwrite``: a folder holding samples of other settings is emptied (used for derived prompt files, whose
    content changes only when an earlier stage changed)."""
    from sdlens.evaluate import EvalConfig, run_eval

    cfg = EvalConfig(
        model=settings.model if model is None else model,
        benchmark=benchmark,
        n=n,
        max_tokens=settings.max_new_tokens,
        limit=limit,
        out=str(out),
        overwrite=overwrite,
        **{name: getattr(settings, name) for name in _STAGE_SETTINGS},
        **(settings.eval_options or {}),
    )
    return run_eval(cfg, console=console, progress=console is not None)


def eval_samples(
    settings: EvalSettings, *, model: str, benchmark: str, out: Path, n: int, limit: int | None, console: Any
) -> list[Sample]:
    """:func:`eval_stage` of ``model`` on ``benchmark`` in ``out``, then the samples it wrote (or had written)."""
    eval_stage(settings, model=model, benchmark=benchmark, out=out, n=n, limit=limit, console=console)
    return read_samples(out / "samples.jsonl")


# ---------------------------------------------------------------- statistics


def _tokens(s: Sample) -> float:
    if s.n_tokens is not None:
        return float(s.n_tokens)
    gen = (s.meta or {}).get("n_generated_tokens")
    return float(gen) if gen is not None else float(len(s.response.split()))


def sample_stats(samples: Iterable[Sample], lexicon: str = "paper", *, resamples: int = RESAMPLES) -> dict[str, Any]:
    """Score, length (tokens), E per response and E per 1k tokens, each ``{"value", "ci"}``, plus counts.

    ``score`` is avg@n (the mean over problems of each problem's share of correct samples); ``per_word`` is each
    hedge word's mean count per response; ``share_with_any`` the share of responses with any hedge."""
    from sdlens.epistemic import count_texts

    samples = list(samples)
    lex = load_lexicon(lexicon)
    if not samples:
        return {"problems": 0, "samples": 0, "lexicon": lex.name}
    arrays = count_texts([s.response for s in samples], lex)
    # per problem sums: samples, correct, graded, tokens, hedges, responses with any hedge, then each word
    hedges = arrays.totals.astype(float)
    per_response = np.column_stack(
        [
            np.ones(len(samples)),
            [bool(s.correct) for s in samples],
            [s.correct is not None for s in samples],
            [_tokens(s) for s in samples],
            hedges,
            hedges > 0,
            arrays.counts,
        ]
    ).astype(float)
    order, sums = per_problem_sums([s.problem_id for s in samples], per_response)
    p = len(order)
    n = sums[:, 0]
    rows = np.column_stack([sums[:, 1] / n, sums[:, 3] / n, sums[:, 4] / n])
    values = rows.mean(axis=0)
    if resamples > 0 and p > 1:  # one problem gives no interval: CIs are over problems
        lo, hi = bootstrap_ci(rows, resamples=resamples, seed=0)
        cis = [[float(lo[k]), float(hi[k])] for k in range(3)]
        res = bootstrap_sums(sums[:, [3, 4]], n_boot=resamples, seed=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            per1k_ci = percentile_ci(1000 * res[:, 1] / res[:, 0])
    else:
        cis = [None, None, None]
        per1k_ci = None
    tokens = sums[:, 3].sum()
    graded = int(sums[:, 2].sum())
    return {
        "score": {"value": float(values[0]), "ci": cis[0]},
        "length": {"value": float(values[1]), "ci": cis[1]},
        "E": {"value": float(values[2]), "ci": cis[2]},
        "E_per_1k": {"value": float(1000 * sums[:, 4].sum() / tokens) if tokens else None, "ci": per1k_ci},
        "share_with_any": float(sums[:, 5].sum() / n.sum()),
        "per_word": {word: float(sums[:, 6 + k].sum() / n.sum()) for k, word in enumerate(lex.words)},
        "problems": p,
        "samples": int(n.sum()),
        "graded": graded,
        "lexicon": lex.name,
        "length_unit": "tokens" if all(s.n_tokens is not None for s in samples) else "tokens or words",
    }
