"""One error type for bad input, printed by the CLI as a single line naming the file, line and field."""

from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """Bad input: the message is one line, ``FILE:LINE: field 'KEY': what is wrong``."""

    def __init__(self, path: str | Path | None, message: str, *, line: int | None = None, field: str | None = None):
        self.path = str(path) if path is not None else None
        self.line = line
        self.field = field
        self.reason = message
        where = self.path or "<input>"
        if line is not None:
            where += f":{line}"
        what = f"field '{field}': {message}" if field else message
        super().__init__(f"{where}: {what}".replace("\n", " "))
