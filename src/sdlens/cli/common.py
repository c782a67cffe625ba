"""What every command module shares: the stderr console, the one-line error exit, JSON output."""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.markup import escape

err = Console(stderr=True)


def fail(e: Exception) -> None:
    """Print a one-line error and exit with status 2."""
    err.print(f"[red]error:[/red] {escape(str(e))}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def emit_json(obj: object) -> None:
    import orjson

    sys.stdout.write(orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY).decode() + "\n")
