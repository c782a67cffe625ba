"""The two records every stage reads and writes (``Problem``, ``Sample``) and their JSONL / Parquet storage (reading
them back is :func:`sdlens.io.read_records`).

JSONL is written one record per line and appended as records are produced, so a killed run loses at most the
record being written; reopening a file for append first drops a torn last line. Parquet is written to a
temporary file and renamed into place, so a reader never sees half a file.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import orjson

from sdlens.errors import InputError
from sdlens.runfolder import atomic_path


@dataclass(slots=True)
class Problem:
    """A task to solve: the prompt as chat messages and its ground-truth answer."""

    id: str
    messages: list[dict[str, Any]]
    answer: str | None = None
    source: str | None = None  # benchmark or verl data_source
    split: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # e.g. extra_info, problem_id, a hint solution


@dataclass(slots=True)
class Sample:
    """One generated response to a Problem, with everything later stages add to it."""

    problem_id: str
    index: int = 0  # 0..n-1 within the problem (and context / step)
    response: str = ""  # full decoded text, thinking included
    thinking: str | None = None  # the split of ``response`` (see sdlens.epistemic.segment)
    answer_text: str | None = None
    n_tokens: int | None = None
    n_thinking_tokens: int | None = None
    finish_reason: str | None = None
    extracted: str | None = None
    correct: bool | None = None
    grader: str | None = None
    context: str | None = None  # teacher context / hint that produced it, e.g. "none", "s", "round1"
    step: int | None = None  # training step, if any
    model: str | None = None
    sampling: dict[str, Any] | None = None
    answer: str | None = None  # ground truth, copied from the Problem so a sample can be graded on its own
    source: str | None = None  # benchmark / data_source, copied from the Problem
    meta: dict[str, Any] = field(default_factory=dict)


SAMPLE_FIELDS = tuple(f.name for f in dataclasses.fields(Sample))
PROBLEM_FIELDS = tuple(f.name for f in dataclasses.fields(Problem))

R = TypeVar("R", Problem, Sample)


def to_dict(record: Problem | Sample) -> dict[str, Any]:
    return {name: getattr(record, name) for name in _fields(type(record))}


def _fields(cls: type) -> tuple[str, ...]:
    return SAMPLE_FIELDS if cls is Sample else PROBLEM_FIELDS


def from_dict(cls: type[R], data: dict[str, Any], *, path: str | Path | None = None, line: int | None = None) -> R:
    """Build a record from a dict; unknown keys go to ``meta`` so nothing a user stored is lost."""
    names = _fields(cls)
    known = {k: v for k, v in data.items() if k in names}
    extra = {k: v for k, v in data.items() if k not in names}
    required = ("problem_id",) if cls is Sample else ("id",)
    for key in required:
        if known.get(key) is None:
            raise InputError(path, "missing required key", line=line, field=key)
    known[required[0]] = str(known[required[0]])
    meta = known.get("meta") or {}
    if not isinstance(meta, dict):
        raise InputError(path, f"expected an object, got {type(meta).__name__}", line=line, field="meta")
    if extra:
        meta = {**meta, **extra}
    known["meta"] = meta
    _check_types(cls, known, path, line)
    return cls(**known)


_TYPES: dict[str, tuple[type, ...]] = {
    "index": (int,),
    "response": (str,),
    "thinking": (str,),
    "answer_text": (str,),
    "n_tokens": (int,),
    "n_thinking_tokens": (int,),
    "finish_reason": (str,),
    "extracted": (str,),
    "correct": (bool,),
    "grader": (str,),
    "context": (str,),
    "step": (int,),
    "model": (str,),
    "sampling": (dict,),
    "answer": (str,),
    "source": (str,),
    "messages": (list,),
    "split": (str,),
}


def _check_types(cls: type, known: dict[str, Any], path: str | Path | None, line: int | None) -> None:
    for key, value in known.items():
        want = _TYPES.get(key)
        if value is None or want is None:
            continue
        if key == "answer" and isinstance(value, int | float) and not isinstance(value, bool):
            known[key] = str(value)
            continue
        ok = isinstance(value, want) and not (want == (int,) and isinstance(value, bool))
        if not ok:
            raise InputError(path, f"expected {want[0].__name__}, got {type(value).__name__}", line=line, field=key)


# ---------------------------------------------------------------- JSONL


class JsonlWriter:
    """Append records to a JSONL file one whole line at a time (a rerun resumes where a killed run stopped)."""

    def __init__(self, path: str | Path, *, append: bool = True):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if append:
            _drop_torn_tail(self.path)
        self._fh = open(self.path, "ab" if append else "wb")  # noqa: SIM115 - closed in close()

    def write(self, record: Problem | Sample | dict[str, Any]) -> None:
        data = record if isinstance(record, dict) else to_dict(record)
        self._fh.write(orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _drop_torn_tail(path: Path) -> None:
    """Cut a last line that lacks its newline: it is what a killed writer left half-written."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as fh:
        fh.seek(-1, os.SEEK_END)
        if fh.read(1) == b"\n":
            return
        size = fh.seek(0, os.SEEK_END)
        chunk = 1 << 16
        pos = size
        while pos > 0:
            start = max(0, pos - chunk)
            fh.seek(start)
            buf = fh.read(pos - start)
            nl = buf.rfind(b"\n")
            if nl >= 0:
                fh.truncate(start + nl + 1)
                return
            pos = start
        fh.truncate(0)


def write_jsonl(path: str | Path, records: Iterable[Problem | Sample | dict[str, Any]], *, append: bool = False) -> int:
    """Write records to JSONL. With ``append=False`` the file is replaced atomically when all are written."""
    path = Path(path)
    n = 0
    if append:
        with JsonlWriter(path, append=True) as w:
            for r in records:
                w.write(r)
                n += 1
        return n
    with atomic_path(path) as tmp, JsonlWriter(tmp, append=False) as w:
        for r in records:
            w.write(r)
            n += 1
    return n


# ---------------------------------------------------------------- Parquet

# Free-form dicts are stored as JSON text so one Parquet schema fits every record.
JSON_COLUMNS = {"meta", "sampling", "messages"}


def _arrow_schema(cls: type):
    import pyarrow as pa

    types = {
        "index": pa.int64(),
        "n_tokens": pa.int64(),
        "n_thinking_tokens": pa.int64(),
        "step": pa.int64(),
        "correct": pa.bool_(),
    }
    return pa.schema([(name, types.get(name, pa.string())) for name in _fields(cls)])


def write_parquet(path: str | Path, records: Iterable[Problem | Sample], *, cls: type | None = None) -> int:
    """Write records to Parquet atomically (temporary file, then rename)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = list(records)
    if cls is None:
        cls = type(rows[0]) if rows else Sample
    names = _fields(cls)
    columns: dict[str, list[Any]] = {name: [] for name in names}
    for r in rows:
        for name in names:
            v = getattr(r, name)
            if name in JSON_COLUMNS:
                v = None if v is None else orjson.dumps(v).decode()
            columns[name].append(v)
    table = pa.table(columns, schema=_arrow_schema(cls))
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return len(rows)
