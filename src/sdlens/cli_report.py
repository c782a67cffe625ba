"""CLI: ``sdlens report DIR`` (thin over :func:`sdlens.report.build_report`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from sdlens.errors import InputError

err = Console(stderr=True)


def register(app: typer.Typer) -> None:
    @app.command("report", context_settings={"help_option_names": ["-h", "--help"]})
    def report_cmd(
        run_dir: Annotated[Path, typer.Argument(help="An experiment run, a sdlens eval folder, or a folder of runs.")],
        out: Annotated[
            Path | None, typer.Option("--out", "-o", help="Where to write report.html / report.md (default: DIR).")
        ] = None,
    ) -> None:
        """Write a self-contained report.html (tables with CIs, figures, hedge-highlighted traces) and report.md."""
        from rich.markup import escape

        from sdlens.report import build_report

        try:
            path = build_report(run_dir, out)
        except InputError as e:
            err.print(f"[red]error:[/red] {escape(str(e))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        typer.echo(str(path))
        typer.echo(str(path.with_name("report.md")))
