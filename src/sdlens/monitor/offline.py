"""``sdlens monitor DIR``: the per-step statistics and the detector's verdict of a finished (or running) run.

Sources, tried in this order:

1. ``epistemic.jsonl`` (the file, or a folder holding it): the callback's records; a step logged twice (a resumed
   run) keeps its last record.
2. a folder of per-checkpoint eval samples: sub-folders whose name ends in a number (``checkpoint-100``,
   ``global_step_100``, ``step100``) holding sdlens Samples (``samples.jsonl`` from ``sdlens eval``, or any file
   :func:`sdlens.io.iter_samples` reads); the number is the step.
3. anything else :func:`sdlens.io.iter_samples` reads with a step per sample: verl ``rollout_data_dir`` dumps (a
   folder of ``{step}.jsonl``; the file name gives the step when a line has none), TRL's ``completions/*.parquet``
   (``log_completions=True``), or JSONL / Parquet with a ``step`` field.

For 2 and 3 the statistics are computed here (:func:`sdlens.monitor.stats.step_stats`); correctness is the
sample's ``correct``, else a reward column (``reward*``, TRL) above 0.5. In every case the detector is rerun over
the steps in order with the given settings.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from sdlens.errors import InputError
from sdlens.io import iter_records
from sdlens.models import load_tokenizer
from sdlens.monitor.detector import Detector, DetectorConfig
from sdlens.monitor.stats import Rollout, step_stats

__all__ = ["LOG_NAME", "read_run"]

LOG_NAME = "epistemic.jsonl"
_CKPT_DIR = re.compile(r"(\d+)$")


def _read_log(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    by_step: dict[int, dict[str, Any]] = {}
    notes: list[str] = []
    for n, rec in iter_records(path, allow_empty=True):
        if not isinstance(rec.get("step"), int):
            raise InputError(path, "expected an integer", line=n, field="step")
        if rec["step"] in by_step:
            notes.append(f"step {rec['step']} logged more than once (a resumed run): its last record is used")
            prev = by_step[rec["step"]]
            if "hedges_per_1k_tokens" in prev and "hedges_per_1k_tokens" not in rec:
                rec = {**prev, **{k: v for k, v in rec.items() if v is not None}}
        by_step[rec["step"]] = rec
    return [by_step[s] for s in sorted(by_step)], notes[:1]


def _correct(sample: Any) -> bool | None:
    if sample.correct is not None:
        return bool(sample.correct)
    for key, value in (sample.meta or {}).items():
        if key.startswith("reward") and isinstance(value, int | float) and not isinstance(value, bool):
            return value > 0.5
    return None


def _step_of(sample: Any) -> int | None:
    if sample.step is not None:
        return int(sample.step)
    stem = Path(str((sample.meta or {}).get("file", ""))).stem
    return int(stem) if stem.isdigit() else None


def _checkpoint_dirs(path: Path) -> list[tuple[int, Path]]:
    out = []
    for sub in path.iterdir() if path.is_dir() else ():
        m = _CKPT_DIR.search(sub.name)
        if sub.is_dir() and m and any(sub.glob("*.jsonl")) | any(sub.glob("*.parquet")):
            out.append((int(m.group(1)), sub))
    return sorted(out)


def _sample_files(folder: Path) -> list[Path]:
    preferred = folder / "samples.jsonl"
    if preferred.is_file():
        return [preferred]
    return sorted(p for p in [*folder.glob("*.jsonl"), *folder.glob("*.parquet")] if p.name != LOG_NAME)


def _grouped_samples(path: Path, fmt: str | None) -> tuple[str, dict[int, list[Rollout]]]:
    from sdlens.io import iter_samples

    groups: dict[int, list[Rollout]] = defaultdict(list)
    ckpts = _checkpoint_dirs(path) if fmt is None else []
    if ckpts:
        for step, folder in ckpts:
            for file in _sample_files(folder):
                for s in iter_samples(file):
                    groups[step].append(Rollout(s.response, s.n_tokens, _correct(s)))
        return "checkpoint samples", groups
    from sdlens.io import detect_format

    kind = fmt or detect_format(path)
    for s in iter_samples(path, fmt):
        step = _step_of(s)
        if step is None:
            raise InputError(path, f"a {kind} sample without a step (problem {s.problem_id})", field="step")
        groups[step].append(Rollout(s.response, s.n_tokens, _correct(s)))
    return kind, groups


def _load_tokenizer(tokenizer: Any) -> Any:
    if tokenizer is None or not isinstance(tokenizer, str):
        return tokenizer
    return load_tokenizer(tokenizer)


def read_run(
    path: str | Path,
    *,
    fmt: str | None = None,
    tokenizer: Any = None,
    lexicon: str = "words",
    detector: DetectorConfig | None = None,
) -> dict[str, Any]:
    """``{"source", "path", "steps": [per-step stats + "state"], "verdict": {...}, "notes"}`` for a run.

    The keywords are :class:`~sdlens.monitor.config.OfflineConfig`'s fields (``tokenizer`` may also be a loaded
    tokenizer object); ``fmt`` forces an :mod:`sdlens.io` format instead of the detection in the module doc.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such file or folder")
    log = path / LOG_NAME if path.is_dir() else path
    notes: list[str] = []
    if fmt is None and log.is_file() and log.name == LOG_NAME:
        source = "epistemic.jsonl"
        steps, notes = _read_log(log)
    else:
        source, groups = _grouped_samples(path, fmt)
        if not groups:
            raise InputError(path, "no samples found")
        tok = _load_tokenizer(tokenizer)
        steps = [{"step": step, **step_stats(groups[step], tokenizer=tok, lexicon=lexicon)} for step in sorted(groups)]
    det = Detector(detector)
    for rec in steps:
        if "hedges_per_1k_tokens" in rec:
            v = det.update(rec.get("hedges_per_1k_tokens"), rec.get("mean_length"), rec["step"])
            rec["state"] = v.state
        else:
            rec["state"] = None  # a record with only the mechanism signal (no new rollouts at that step)
    verdict = det.summary()
    return {"source": source, "path": str(path), "steps": steps, "verdict": verdict, "notes": notes}
