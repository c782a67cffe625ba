"""Records sdlens wrote (``Sample`` / ``Problem``, JSONL or Parquet: :mod:`sdlens.schema`), read back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson

from sdlens.errors import InputError
from sdlens.io.jsonl import iter_json_lines
from sdlens.schema import JSON_COLUMNS, R, Sample, from_dict

__all__ = ["iter_parquet_records", "read_records"]


def iter_parquet_records(path: str | Path, cls: type[R]) -> Iterator[R]:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    row = 0
    for batch in pf.iter_batches(batch_size=4096):
        for d in batch.to_pylist():
            row += 1
            for name in JSON_COLUMNS:
                if isinstance(d.get(name), str):
                    try:
                        d[name] = orjson.loads(d[name])
                    except orjson.JSONDecodeError as e:
                        raise InputError(path, f"not valid JSON text ({e})", line=row, field=name) from None
            yield from_dict(cls, {k: v for k, v in d.items() if v is not None or k in ("meta",)}, path=path, line=row)


def read_records(path: str | Path, cls: type[R] = Sample) -> Iterator[R]:  # type: ignore[assignment]
    """Read Samples (or Problems) stored by sdlens as JSONL or Parquet."""
    path = Path(path)
    if path.suffix == ".parquet":
        yield from iter_parquet_records(path, cls)
        return
    for line_no, obj in iter_json_lines(path):
        yield from_dict(cls, obj, path=path, line=line_no)
