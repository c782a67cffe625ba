"""Line-by-line JSONL reading with precise errors: every bad line is reported as ``FILE:LINE: reason``."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from sdlens.errors import InputError


@dataclass
class BadLines:
    """Collects lines skipped under ``--skip-bad`` instead of failing on the first one."""

    skip: bool = False
    count: int = 0
    examples: list[str] = field(default_factory=list)

    def handle(self, err: InputError) -> None:
        if not self.skip:
            raise err
        self.count += 1
        if len(self.examples) < 5:
            self.examples.append(str(err))


def iter_json_lines(path: str | Path, bad: BadLines | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line of a JSONL file."""
    path = Path(path)
    bad = bad or BadLines()
    try:
        fh = open(path, "rb")  # noqa: SIM115
    except OSError as e:
        raise InputError(path, f"cannot open: {e.strerror}") from None
    seen_any = False
    with fh:
        for line_no, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            seen_any = True
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError as e:
                bad.handle(InputError(path, _json_reason(raw, e), line=line_no))
                continue
            if not isinstance(obj, dict):
                bad.handle(InputError(path, f"expected a JSON object, got {_kind(obj)}", line=line_no))
                continue
            yield line_no, obj
    if not seen_any:
        raise InputError(path, "file is empty (no records)")


def _json_reason(raw: bytes, err: orjson.JSONDecodeError) -> str:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as u:
        return f"not valid UTF-8 (byte {u.start})"
    msg = str(err).split(":")[0]
    return f"malformed JSON ({msg}, char {err.pos})"


def _kind(obj: Any) -> str:
    return {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}.get(
        type(obj), "null" if obj is None else type(obj).__name__
    )


def require(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], path: Path | str, line: int) -> Any:
    """``obj[key]`` checked for presence and type, else an InputError naming file, line and field."""
    if key not in obj:
        raise InputError(path, "missing key", line=line, field=key)
    value = obj[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, (int,))):
        want = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise InputError(path, f"expected {want}, got {_kind(value)}", line=line, field=key)
    return value


def require_str_list(obj: dict[str, Any], key: str, path: Path | str, line: int) -> list[str]:
    value = require(obj, key, list, path, line)
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise InputError(path, f"item {i} is {_kind(item)}, expected a string", line=line, field=key)
    return value
