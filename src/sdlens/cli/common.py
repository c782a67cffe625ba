"""What every command module shares: the stderr console, the one-line error exit, JSON output, the progress bar.

Light on purpose (rich and orjson load on first use): `sdlens analyze --json` runs without rich
(:mod:`sdlens.cli.fastpath`)."""

from __future__ import annotations

import functools
import sys
from typing import Any, NoReturn


@functools.cache
def stderr_console() -> Any:
    """The rich console on stderr (one per process)."""
    from rich.console import Console

    return Console(stderr=True)


def progress_bar(label: str, unit: str) -> Any:
    """A long command's progress bar on stderr (``LABEL [bar] done/total UNIT elapsed``), removed when done and off
    where stderr is no terminal; a rich ``Progress``, to use as a context manager."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    err = stderr_console()
    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn(unit), TimeElapsedColumn())
    return Progress(*columns, console=err, transient=True, disable=not err.is_terminal)


def fail(e: Exception) -> NoReturn:
    """Print a one-line error and exit with status 2 (typer's app and the argparse path alike)."""
    from rich.markup import escape

    stderr_console().print(f"[red]error:[/red] {escape(str(e))}", highlight=False, soft_wrap=True)
    raise SystemExit(2)


def emit_json(obj: object) -> None:
    import orjson

    sys.stdout.write(orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY).decode() + "\n")
