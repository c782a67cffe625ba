"""The typer app of the `sdlens` command line: a thin layer over the library API, one module per command group
(``sdlens.cli.main`` runs it)."""

from __future__ import annotations

import typer

from sdlens.cli.analyze import register as _register_analyze
from sdlens.cli.commands import APP_HELP
from sdlens.cli.eval import register as _register_eval
from sdlens.cli.experiment import register as _register_experiment
from sdlens.cli.grading import register as _register_grading
from sdlens.cli.lab import register as _register_lab
from sdlens.cli.monitor import register as _register_monitor
from sdlens.cli.probe import register as _register_probe
from sdlens.cli.report import register as _register_report
from sdlens.cli.train import register as _register_train

__all__ = ["app"]

app = typer.Typer(
    name="sdlens",
    help=APP_HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_register_analyze(app)
_register_grading(app)
_register_eval(app)
_register_train(app)
_register_monitor(app)
_register_experiment(app)
_register_report(app)
_register_lab(app)
_register_probe(app)
