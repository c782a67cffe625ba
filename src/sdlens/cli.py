"""The `sdlens` command line: a thin typer layer over the library API."""

from __future__ import annotations

import typer

from sdlens.cli_grading import register as _register_grading

app = typer.Typer(
    name="sdlens",
    help="Measure, evaluate and train around epistemic verbalization in self-distilled reasoning LLMs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_register_grading(app)


def main() -> None:
    app()
