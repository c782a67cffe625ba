"""Line-by-line JSONL reading with precise errors: every bad line is reported as ``FILE:LINE: reason``.

Lines are parsed with orjson (strict JSON, fast). A line orjson rejects is tried once more with Python's ``json``
module, which also takes what ``json.dumps`` writes by default and what the paper's own script reads: ``NaN``,
``Infinity`` and lone surrogate escapes. Such lines are kept and counted (``BadLines.python_json``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from sdlens.errors import InputError

EMPTY_FILE = "file is empty (no records)"
"""The error of a record file without records (a reader may accept one: ``iter_records(allow_empty=True)``)."""


@dataclass
class BadLines:
    """What reading met besides good records: lines skipped under ``--skip-bad`` (instead of failing on the first
    one), and the odd records it kept and counted."""

    skip: bool = False
    count: int = 0
    examples: list[str] = field(default_factory=list)
    python_json: int = 0
    """Lines only Python's ``json`` accepts (``NaN``, ``Infinity``, lone surrogates), read and kept."""
    without_responses: int = 0
    """Records of a one-problem-per-line format with no responses field: a problem with zero responses, as the
    paper's script counts them."""

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
            if is_blank(raw):
                continue
            seen_any = True
            try:
                obj = parse_json_line(raw, path, line_no, bad)
            except InputError as e:
                bad.handle(e)
                continue
            yield line_no, obj
    if not seen_any:
        raise InputError(path, EMPTY_FILE)


def is_blank(raw: bytes) -> bool:
    """Whitespace only, as Python's ``str.strip`` sees it for ASCII (so ``\\x0b`` and ``\\x0c`` lines are blank)."""
    return not raw.strip()


def parse_json_line(raw: bytes, path: str | Path, line: int, bad: BadLines) -> dict[str, Any]:
    """One line's JSON object; what only Python's ``json`` parses is accepted and counted in ``bad``."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        try:
            obj = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise InputError(path, _json_reason(raw, e), line=line) from None
        bad.python_json += 1
    if not isinstance(obj, dict):
        raise InputError(path, f"expected a JSON object, got {_kind(obj)}", line=line)
    return obj


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
