"""The `sdlens` command line: a thin typer layer over the library API, one module per command group.

``python -m sdlens.cli`` and the ``sdlens`` console script (``sdlens.cli:main``) run the same app. ``main`` prints
``sdlens --help`` from the command table (:mod:`sdlens.cli.commands`) and offers other arguments to
:mod:`sdlens.cli.fastpath`, which runs ``sdlens analyze`` without importing typer; the typer app
(:mod:`sdlens.cli.typer_app`) loads only for everything else. ``main`` imports each of these only when the
arguments ask for it, so that ``sdlens analyze FILE`` can start counting first (``_early_scan``).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from sdlens.errors import InputError
from sdlens.imports import lazy_attributes

if TYPE_CHECKING:
    from sdlens.cli.typer_app import app
    from sdlens.epistemic.scan import PaperScan

__all__ = ["app", "main"]

# loaded on first use (PEP 562): `sdlens analyze --json` must not pay for typer, rich and every command module
_LAZY = {"app": "sdlens.cli.typer_app"}
__getattr__ = lazy_attributes(__name__, _LAZY)


def main() -> None:
    argv = sys.argv[1:]
    if argv == ["--help"]:
        from sdlens.cli.commands import top_level_help

        sys.stdout.write(top_level_help())
        return
    early_scan = _early_scan(argv)
    from sdlens.cli.fastpath import end_process, try_run

    if try_run(argv, early_scan=early_scan):
        end_process()
        return
    if early_scan is not None:
        early_scan.close()
    importlib.import_module("sdlens.cli.typer_app").app()


def _early_scan(argv: list[str]) -> PaperScan | None:
    """For ``sdlens analyze FILE... [--json]`` (every setting at its default): the first file's scan, started with
    the default settings before the command's own imports (argparse, the options, numpy, the analyzer), which then
    load on one core while the scanner counts on the other (docs/benchmarks.md). The command takes it over where
    its settings turn out to be the scan's (``start_first_scan``). ``None`` for any other arguments, and where the
    analyzer would not scan the file: the command then reports any error itself."""
    files = [a for a in argv[1:] if a != "--json"]
    if argv[:1] != ["analyze"] or not files or any(a.startswith("-") for a in files):
        return None
    from sdlens.epistemic.config import AnalyzeConfig
    from sdlens.epistemic.scan import start_first_scan

    try:
        return start_first_scan([Path(files[0])], AnalyzeConfig())
    except InputError:
        return None
