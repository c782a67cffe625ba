"""Grading files: Samples written by sdlens, or any JSONL / Parquet with ``response`` and ``answer`` per record.

The output keeps every input field as it was and adds (or replaces) ``extracted``, ``correct``, ``grader`` and
``grade_error``. It is written to a temporary file and renamed into place, in input order.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from sdlens.errors import InputError
from sdlens.grading.base import GradeItem, Grader, Verdict
from sdlens.io import batched, is_parquet, iter_records, open_parquet
from sdlens.schema import atomic_path

__all__ = ["GradeSummary", "count_records", "gold_answer", "grade_file", "grade_records", "response_text"]

ADDED = ("extracted", "correct", "grader", "grade_error")
CHUNK = 4096


@dataclass
class GradeSummary:
    path: str
    out: str | None
    grader: str
    n: int = 0
    n_correct: int = 0
    n_extracted: int = 0
    n_errors: int = 0
    errors: dict[str, int] = field(default_factory=dict)  # most common reasons (timeouts grouped)
    seconds: float = 0.0

    @property
    def answers_per_s(self) -> float:
        return self.n / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["accuracy"] = self.n_correct / self.n if self.n else None
        d["answers_per_s"] = round(self.answers_per_s, 1)
        return d

    def add(self, verdicts: list[Verdict], reasons: Counter) -> None:
        for v in verdicts:
            self.n += 1
            self.n_correct += v.correct
            self.n_extracted += v.extracted is not None
            if v.error:
                self.n_errors += 1
                reasons[_reason_group(v.error)] += 1


def _reason_group(error: str) -> str:
    return error.split("(")[0].strip().rstrip(":")


def gold_answer(obj: dict[str, Any], path: Path, line: int) -> str:
    """A record's gold ``answer`` as text; missing or null is a one-line error naming the file, line and field."""
    if "answer" not in obj:
        raise InputError(path, "missing key (the gold answer is needed to grade)", line=line, field="answer")
    gold = obj["answer"]
    if gold is None:
        raise InputError(path, "null (the gold answer is needed to grade)", line=line, field="answer")
    if isinstance(gold, bool) or not isinstance(gold, str | int | float):
        raise InputError(path, f"expected a string or number, got {type(gold).__name__}", line=line, field="answer")
    return gold if isinstance(gold, str) else str(gold)


def response_text(obj: dict[str, Any], path: Path, line: int) -> str:
    """A record's ``response`` (a string); anything else is a one-line error naming the file, line and field."""
    if "response" not in obj:
        raise InputError(path, "missing key", line=line, field="response")
    resp = obj["response"]
    if not isinstance(resp, str):
        kind = "null" if resp is None else type(resp).__name__
        raise InputError(path, f"expected a string, got {kind}", line=line, field="response")
    return resp


def count_records(path: str | Path) -> int | None:
    """Number of records (for a progress bar), or ``None`` if the file cannot be read."""
    path = Path(path)
    try:
        if is_parquet(path):
            return open_parquet(path).metadata.num_rows
        with open(path, "rb") as fh:
            return sum(1 for raw in fh if raw.strip())
    except (OSError, InputError):
        return None


def grade_records(
    records: list[tuple[int, dict[str, Any]]], grader: Grader, path: str | Path = "<input>", progress=None
) -> list[Verdict]:
    """Validate ``records`` (``(line, dict)``) and grade them; errors name the file, line and field."""
    path = Path(path)
    items = [GradeItem(response_text(obj, path, line), gold_answer(obj, path, line)) for line, obj in records]
    return grader.grade(items, progress=progress)


def _annotated(obj: dict[str, Any], v: Verdict, name: str) -> dict[str, Any]:
    out = dict(obj)
    out["extracted"] = v.extracted
    out["correct"] = v.correct
    out["grader"] = name
    out["grade_error"] = v.error
    return out


def _json_default(obj: Any) -> Any:
    if isinstance(obj, bytes | bytearray):
        return obj.decode("utf-8", "replace")
    return str(obj)


def _dumps(obj: dict[str, Any]) -> bytes:
    return orjson.dumps(obj, default=_json_default, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)


def grade_file(
    path: str | Path,
    out: str | Path,
    grader: Grader,
    *,
    progress: Callable[[int], None] | None = None,
    chunk: int = CHUNK,
) -> GradeSummary:
    """Grade every record of ``path`` and write ``out`` (JSONL, or Parquet when it ends in ``.parquet``)."""
    path, out = Path(path), Path(out)
    summary = GradeSummary(str(path), str(out), grader.name)
    reasons: Counter = Counter()
    t0 = time.perf_counter()
    if is_parquet(path) and is_parquet(out):
        _grade_parquet_to_parquet(path, out, grader, summary, reasons, progress, chunk)
    elif is_parquet(out):
        rows: list[dict[str, Any]] = []
        for recs in batched(iter_records(path), chunk):
            verdicts = grade_records(recs, grader, path, progress)
            summary.add(verdicts, reasons)
            rows.extend(_annotated(obj, v, grader.name) for (_, obj), v in zip(recs, verdicts, strict=True))
        _write_rows_parquet(rows, out, path)
    else:
        with atomic_path(out) as tmp, open(tmp, "wb") as fh:
            for recs in batched(iter_records(path), chunk):
                verdicts = grade_records(recs, grader, path, progress)
                summary.add(verdicts, reasons)
                fh.write(
                    b"".join(
                        _dumps(_annotated(o, v, grader.name)) + b"\n" for (_, o), v in zip(recs, verdicts, strict=True)
                    )
                )
    summary.seconds = time.perf_counter() - t0
    summary.errors = dict(reasons.most_common(10))
    return summary


def _write_rows_parquet(rows: list[dict[str, Any]], out: Path, src: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pa.Table.from_pylist(rows)
    except (pa.ArrowException, TypeError) as e:
        raise InputError(
            src, f"records cannot be stored as Parquet ({str(e).splitlines()[0][:120]}); write JSONL"
        ) from None
    with atomic_path(out) as tmp:
        pq.write_table(table, tmp)


def _grade_parquet_to_parquet(path, out, grader, summary, reasons, progress, chunk) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pf = open_parquet(path)
    if pf.metadata.num_rows == 0:
        raise InputError(path, "file is empty (no records)")
    added_fields = [
        pa.field("extracted", pa.string()),
        pa.field("correct", pa.bool_()),
        pa.field("grader", pa.string()),
        pa.field("grade_error", pa.string()),
    ]
    base = pf.schema_arrow
    keep = [f for f in base if f.name not in ADDED]
    schema = pa.schema(keep + added_fields, metadata=base.metadata)
    row = 0
    with atomic_path(out) as tmp:
        writer = pq.ParquetWriter(tmp, schema)
        try:
            for batch in pf.iter_batches(batch_size=chunk):
                recs = []
                for obj in batch.to_pylist():
                    row += 1
                    recs.append((row, obj))
                verdicts = grade_records(recs, grader, path, progress)
                summary.add(verdicts, reasons)
                cols = [batch.column(f.name) for f in keep]
                cols += [
                    pa.array([v.extracted for v in verdicts], pa.string()),
                    pa.array([v.correct for v in verdicts], pa.bool_()),
                    pa.array([grader.name] * len(verdicts), pa.string()),
                    pa.array([v.error for v in verdicts], pa.string()),
                ]
                writer.write_batch(pa.RecordBatch.from_arrays(cols, schema=schema))
        finally:
            writer.close()
