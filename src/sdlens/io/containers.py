"""Files that hold records in a layout other than JSONL / Parquet: a JSON array in one file, and a folder written
by ``datasets``' ``save_to_disk`` (Arrow IPC stream shards listed in ``state.json``; a ``DatasetDict`` has one such
folder per split, named in ``dataset_dict.json``).

Both yield ``(record number, record)`` like the JSONL and Parquet readers, so every format reader works on them;
errors name the record by its 1-based position (shown where a line number would be).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from sdlens.errors import InputError
from sdlens.io.jsonl import EMPTY_FILE, _kind


def is_json_array(path: Path) -> bool:
    """A file whose first non-blank byte is ``[``: one JSON array of records (``.json`` files are checked too)."""
    if path.is_dir():
        return False
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096).lstrip()
            while not head:
                chunk = fh.read(4096)
                if not chunk:
                    return False
                head = chunk.lstrip()
    except OSError:
        return False
    return head[:1] == b"["


def iter_json_array(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """The records of a file holding one JSON array of objects."""
    try:
        data = orjson.loads(path.read_bytes())
    except OSError as e:
        raise InputError(path, f"cannot open: {e.strerror}") from None
    except orjson.JSONDecodeError as e:
        raise InputError(path, f"malformed JSON array ({str(e).split(':')[0]}, char {e.pos})") from None
    if not isinstance(data, list):
        raise InputError(path, f"expected a JSON array of records, got {_kind(data)}")
    if not data:
        raise InputError(path, EMPTY_FILE)
    for i, obj in enumerate(data, start=1):
        if not isinstance(obj, dict):
            raise InputError(path, f"record {i} is {_kind(obj)}, expected a JSON object", line=i)
        yield i, obj


def is_saved_dataset(path: Path) -> bool:
    """A folder written by ``Dataset.save_to_disk`` or ``DatasetDict.save_to_disk``."""
    return path.is_dir() and ((path / "state.json").is_file() or (path / "dataset_dict.json").is_file())


def _arrow_shards(path: Path) -> list[Path]:
    """The shard files of a saved dataset, splits in the order ``dataset_dict.json`` lists them."""
    if (path / "dataset_dict.json").is_file():
        try:
            splits = orjson.loads((path / "dataset_dict.json").read_bytes()).get("splits")
        except (orjson.JSONDecodeError, AttributeError):
            raise InputError(path / "dataset_dict.json", "expected an object with a 'splits' list") from None
        if not isinstance(splits, list) or not splits:
            raise InputError(path / "dataset_dict.json", "expected a non-empty list", field="splits")
        return [shard for split in splits for shard in _arrow_shards(path / str(split))]
    state_file = path / "state.json"
    try:
        state = orjson.loads(state_file.read_bytes())
    except OSError as e:
        raise InputError(state_file, f"cannot open: {e.strerror}") from None
    except orjson.JSONDecodeError:
        raise InputError(state_file, "malformed JSON") from None
    files = state.get("_data_files") if isinstance(state, dict) else None
    if not isinstance(files, list) or not files:
        raise InputError(state_file, "expected a non-empty list of shard files", field="_data_files")
    shards = []
    for entry in files:
        name = entry.get("filename") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not (path / name).is_file():
            raise InputError(state_file, f"lists a shard that is not there: {name!r}", field="_data_files")
        shards.append(path / name)
    return shards


def saved_dataset_columns(path: Path) -> set[str]:
    import pyarrow as pa

    first = _arrow_shards(path)[0]
    try:
        with pa.memory_map(str(first)) as source:
            return set(pa.ipc.open_stream(source).schema.names)
    except pa.ArrowInvalid as e:
        raise InputError(first, f"not an Arrow stream shard ({e})") from None


def iter_saved_dataset(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """The rows of a saved dataset, all shards (and splits) in order, numbered from 1 across them."""
    import pyarrow as pa

    row = 0
    for shard in _arrow_shards(path):
        try:
            with pa.memory_map(str(shard)) as source:
                for batch in pa.ipc.open_stream(source):
                    for rec in batch.to_pylist():
                        row += 1
                        yield row, rec
        except pa.ArrowInvalid as e:
            raise InputError(shard, f"not an Arrow stream shard ({e})") from None
    if row == 0:
        raise InputError(path, "dataset is empty (no records)")
