r"""Benchmarks: the paper's four math sets by name, or any verl parquet / JSONL file, as ``Problem`` lists.

Names resolve to ``<name>.parquet`` files in the verl layout the paper ships (``data_source``, ``prompt`` chat
messages that already end with the paper's instruction, ``reward_model.ground_truth``, ``extra_info``). The first
match wins: ``--data-dir``; ``$SDLENS_DATA_DIR``; the data shipped in the package (the four evaluation sets and the
five section-6.2 coverage subsets, listed with their provenance by :func:`shipped_sets`); ``<cache>/data/math/
evaluation`` (``$SDLENS_CACHE``, default ``~/.cache/sdlens``); then, for the four evaluation names, the hub: fetched
once when it is reachable (no ``HF_HUB_OFFLINE``) from the dataset in ``BENCHMARKS`` and written to the cache dir
in the same verl layout, with the paper's prompt.

A path may be a verl parquet, a JSONL / Parquet of sdlens Problems, or a JSONL / Parquet of raw problems with a
``problem`` (or ``question``) and an ``answer`` field, to which the paper's instruction is appended.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sdlens.errors import InputError
from sdlens.io import iter_problems, iter_records
from sdlens.models import cache_dir
from sdlens.prompts import PAPER_SUFFIX
from sdlens.runfolder import atomic_path, file_sha256
from sdlens.schema import Problem

__all__ = [
    "BENCHMARKS",
    "FEW_SHOT_EXAMPLES",
    "PAPER_SUFFIX",
    "BenchmarkData",
    "data_dirs",
    "file_sha256",
    "load_benchmark",
    "resolve_benchmark",
    "shipped_path",
    "shipped_sets",
]


@dataclass(frozen=True)
class HubSource:
    dataset: str
    split: str
    question_keys: tuple[str, ...] = ("problem", "question", "Problem")
    answer_keys: tuple[str, ...] = ("answer", "Answer")
    id_keys: tuple[str, ...] = ("unique_id", "id", "ID", "idx")


@dataclass(frozen=True)
class BenchmarkInfo:
    name: str
    rows: int
    description: str
    hub: HubSource


BENCHMARKS: dict[str, BenchmarkInfo] = {
    "aime24": BenchmarkInfo("aime24", 30, "AIME 2024 (I and II)", HubSource("HuggingFaceH4/aime_2024", "train")),
    "aime25": BenchmarkInfo("aime25", 30, "AIME 2025 (I and II)", HubSource("math-ai/aime25", "test")),
    "amc23": BenchmarkInfo("amc23", 40, "AMC 2023", HubSource("math-ai/amc23", "test")),
    "math500": BenchmarkInfo("math500", 500, "MATH-500 (Lightman et al.)", HubSource("HuggingFaceH4/MATH-500", "test")),
}

# One-shot (or few-shot) worked examples put in the chat before the problem, for small models that otherwise never
# write \boxed{} (SmolLM2-135M: 0 of 40 boxed zero-shot, 33 of 40 with one example).
FEW_SHOT_EXAMPLES: list[tuple[str, str]] = [
    (
        "Tom has 3 apples and buys 4 more. How many apples does he have now?",
        "Tom starts with 3 apples and buys 4 more, so he has 3 + 4 = 7 apples.\nThe answer is \\boxed{7}.",
    ),
    ("What is the value of $2^3 + 5$?", "$2^3 = 8$, and $8 + 5 = 13$.\nThe answer is \\boxed{13}."),
    (
        "A rectangle is 6 cm long and 4 cm wide. What is its area in square centimeters?",
        "The area of a rectangle is length times width: $6 \\times 4 = 24$.\nThe answer is \\boxed{24}.",
    ),
    (
        "Solve for $x$: $3x - 5 = 10$.",
        "Add 5 to both sides: $3x = 15$. Divide by 3: $x = 5$.\nThe answer is \\boxed{5}.",
    ),
]


@dataclass
class BenchmarkData:
    """Problems ready to generate from, and where they came from."""

    name: str  # the benchmark name, or the file stem for a path
    path: Path
    sha256: str
    problems: list[Problem]
    total: int  # problems in the file, before --limit

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": str(self.path),
            "sha256": self.sha256,
            "total": self.total,
            "selected": len(self.problems),
        }


def data_dirs(explicit: str | Path | None = None) -> list[Path]:
    """The folders searched for ``<name>.parquet``: ``explicit`` (``--data-dir``) alone, else ``$SDLENS_DATA_DIR``
    (if set) and the cache folder; :func:`resolve_benchmark` searches the shipped data between the two."""
    if explicit is not None:
        return [Path(explicit).expanduser()]
    env = os.environ.get("SDLENS_DATA_DIR")
    return [*([Path(env).expanduser()] if env else []), cache_dir() / "data" / "math" / "evaluation"]


_DATA_ROOT = Path(__file__).resolve().parent / "data"


def shipped_sets() -> list[dict[str, Any]]:
    """The data sets shipped in the package, with their provenance (``data/provenance.json``): ``name``, ``kind``
    (``eval`` or ``coverage``), ``file``, ``n_problems`` (rows), ``n_distinct``, ``source``, ``license``,
    ``sha256``."""
    doc = json.loads((_DATA_ROOT / "provenance.json").read_text(encoding="utf-8"))
    return list(doc["files"])


def shipped_path(name: str) -> Path | None:
    """The shipped file of a data set name (``math500``, ``seen_8x8``, ...), or ``None``."""
    entry = next((e for e in shipped_sets() if e["name"] == name), None)
    return None if entry is None else _DATA_ROOT / entry["file"]


def resolve_benchmark(spec: str, data_dir: str | Path | None = None) -> tuple[str, Path]:
    """``(name, file)`` for a data set name or a path. A name is looked up in ``--data-dir`` alone when it is given;
    otherwise in ``$SDLENS_DATA_DIR``, the shipped data and the cache, in that order; an evaluation name found
    nowhere is fetched from the hub."""
    spec = str(spec).strip()
    path = Path(spec).expanduser()
    shipped = shipped_path(spec)
    if spec not in BENCHMARKS and shipped is None:
        if path.is_file():
            return path.stem, path
        if path.suffix in (".parquet", ".jsonl", ".json") or "/" in spec:
            raise InputError(path, "no such benchmark file", field="benchmark")
        known = [*BENCHMARKS, *(e["name"] for e in shipped_sets() if e["name"] not in BENCHMARKS)]
        raise InputError(
            None,
            f"unknown benchmark {spec!r}: not a known name ({', '.join(known)}) or a .parquet / .jsonl file",
            field="benchmark",
        )
    dirs = data_dirs(data_dir)
    searched = list(dirs)
    if data_dir is None and shipped is not None:  # after $SDLENS_DATA_DIR, before the cache
        searched.insert(len(dirs) - 1, shipped.parent)
    for d in searched:
        for suffix in (".parquet", ".jsonl"):
            f = d / f"{spec}{suffix}"
            if f.is_file():
                return spec, f
    if spec not in BENCHMARKS:  # a shipped-only name (coverage subsets) when --data-dir lacks it
        raise InputError(None, f"benchmark {spec!r}: no {spec}.parquet in {dirs[0]}", field="benchmark")
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    if offline:
        raise InputError(
            None,
            f"benchmark {spec!r}: no {spec}.parquet in {', '.join(str(d) for d in dirs)} and the hub is offline "
            "(HF_HUB_OFFLINE=1); pass --data-dir with a folder holding it",
            field="benchmark",
        )
    return spec, fetch_from_hub(spec, dirs[-1])


def fetch_from_hub(name: str, target_dir: Path) -> Path:
    """Download a known benchmark's hub dataset and store it as ``<target_dir>/<name>.parquet`` (verl layout)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    src = BENCHMARKS[name].hub
    try:
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(src.dataset, repo_type="dataset", allow_patterns=["*.parquet", "*.jsonl"]))
    except Exception as e:  # network, auth, missing repo: one line
        raise InputError(
            None,
            f"benchmark {name!r}: could not fetch {src.dataset} from the hub "
            f"({str(e).splitlines()[0] if str(e) else type(e).__name__}); pass --data-dir",
            field="benchmark",
        ) from None
    files = sorted(p for p in folder.rglob("*") if p.suffix in (".parquet", ".jsonl") and src.split in p.name)
    files = files or sorted(p for p in folder.rglob("*") if p.suffix in (".parquet", ".jsonl"))
    rows: list[dict[str, Any]] = []
    for f in files:
        rows.extend(_read_rows(f))
    if not rows:
        raise InputError(folder, f"the hub dataset {src.dataset} has no rows", field="benchmark")
    out = []
    for i, r in enumerate(rows):
        q = next((r[k] for k in src.question_keys if r.get(k) is not None), None)
        a = next((r[k] for k in src.answer_keys if r.get(k) is not None), None)
        if q is None or a is None:
            raise InputError(folder, f"row {i}: no question / answer field", field="benchmark")
        pid = next((r[k] for k in src.id_keys if r.get(k) is not None), i)
        out.append(
            {
                "data_source": name,
                "prompt": [{"role": "user", "content": str(q).strip() + PAPER_SUFFIX}],
                "ability": "MATH",
                "reward_model": {"ground_truth": str(a), "style": "rule"},
                "extra_info": {"index": str(pid), "raw_problem": str(q), "split": src.split, "source": src.dataset},
            }
        )
    target_dir.mkdir(parents=True, exist_ok=True)
    dest = target_dir / f"{name}.parquet"
    with atomic_path(dest) as tmp:
        pq.write_table(pa.Table.from_pylist(out), tmp)
    return dest


def _read_rows(path: Path) -> list[dict[str, Any]]:
    return [obj for _, obj in iter_records(path)]


def _problems_from_file(path: Path, name: str) -> list[Problem]:
    rows = _read_rows(path) if path.suffix == ".jsonl" else None
    if rows is not None and rows and "prompt" not in rows[0] and "messages" not in rows[0]:
        return [_raw_problem(r, i, path, name) for i, r in enumerate(rows, 1)]
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        cols = set(pq.ParquetFile(path).schema_arrow.names)
        if "prompt" not in cols and "messages" not in cols:
            return [_raw_problem(r, i, path, name) for i, r in enumerate(_read_rows(path), 1)]
    return list(iter_problems(path))


def _raw_problem(r: dict[str, Any], line: int, path: Path, name: str) -> Problem:
    q = next((r[k] for k in ("problem", "question", "Problem") if r.get(k) is not None), None)
    if q is None:
        raise InputError(path, "no prompt, messages, problem or question field", line=line, field="problem")
    a = next((r[k] for k in ("answer", "Answer", "ground_truth") if r.get(k) is not None), None)
    pid = next((r[k] for k in ("id", "unique_id", "problem_id", "idx") if r.get(k) is not None), line - 1)
    return Problem(
        id=str(pid),
        messages=[{"role": "user", "content": str(q).strip() + PAPER_SUFFIX}],
        answer=None if a is None else str(a),
        source=name,
        meta={"raw_problem": str(q)},
    )


def with_few_shot(problem: Problem, k: int) -> Problem:
    """The problem with ``k`` worked examples (user / assistant turns) before its own messages."""
    if k <= 0:
        return problem
    if k > len(FEW_SHOT_EXAMPLES):
        raise InputError(None, f"at most {len(FEW_SHOT_EXAMPLES)} few-shot examples, got {k}", field="few_shot")
    shots: list[dict[str, Any]] = []
    for q, a in FEW_SHOT_EXAMPLES[:k]:
        shots += [{"role": "user", "content": q + PAPER_SUFFIX}, {"role": "assistant", "content": a}]
    return replace(problem, messages=shots + list(problem.messages), meta={**problem.meta, "few_shot": k})


def load_benchmark(
    spec: str, *, data_dir: str | Path | None = None, limit: int | None = None, few_shot: int = 0
) -> BenchmarkData:
    """Problems of a benchmark (first ``limit`` in file order), with ``few_shot`` worked examples prepended."""
    if limit is not None and limit < 1:
        raise InputError(None, f"limit must be >= 1, got {limit}", field="limit")
    if few_shot < 0:
        raise InputError(None, f"few-shot must be >= 0, got {few_shot}", field="few_shot")
    name, path = resolve_benchmark(spec, data_dir)
    problems = _problems_from_file(path, name)
    if not problems:
        raise InputError(path, "the benchmark file has no problems", field="benchmark")
    seen: set[str] = set()
    for p in problems:
        if p.id in seen:
            raise InputError(path, f"duplicate problem id {p.id!r}", field="id")
        seen.add(p.id)
    total = len(problems)
    chosen = problems[:limit] if limit else problems
    if name in BENCHMARKS:  # the paper's aime24 file says data_source "math_dapo": name the benchmark instead
        chosen = [replace(p, source=name, meta={**p.meta, "data_source": p.source}) for p in chosen]
    chosen = [with_few_shot(replace(p, source=p.source or name), few_shot) for p in chosen]
    return BenchmarkData(name=name, path=path, sha256=file_sha256(path), problems=chosen, total=total)
