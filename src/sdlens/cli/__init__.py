"""The `sdlens` command line: a thin typer layer over the library API, one module per command group.

``python -m sdlens.cli`` and the ``sdlens`` console script (``sdlens.cli:main``) run the same app. ``main`` prints
``sdlens --help`` from the command table (:mod:`sdlens.cli.commands`) and offers other arguments to
:mod:`sdlens.cli.fastpath`, which runs ``sdlens analyze`` without importing typer; the typer app
(:mod:`sdlens.cli.typer_app`) loads only for everything else.
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING

from sdlens.cli.commands import top_level_help
from sdlens.cli.fastpath import end_process, try_run
from sdlens.imports import lazy_attributes

if TYPE_CHECKING:
    from sdlens.cli.typer_app import app

__all__ = ["app", "main"]

# loaded on first use (PEP 562): `sdlens analyze --json` must not pay for typer, rich and every command module
_LAZY = {"app": "sdlens.cli.typer_app"}
__getattr__ = lazy_attributes(__name__, _LAZY)


def main() -> None:
    if sys.argv[1:] == ["--help"]:
        sys.stdout.write(top_level_help())
        return
    if try_run(sys.argv[1:]):
        end_process()
        return
    importlib.import_module("sdlens.cli.typer_app").app()
