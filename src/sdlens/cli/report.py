"""CLI: ``sdlens report PATH...``: run folders go to :func:`sdlens.report.build_report`, trace files and folders
(anything ``sdlens analyze`` reads) to :func:`sdlens.report.traces.write_trace_report`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from sdlens.cli.commands import COMMAND_HELP
from sdlens.cli.common import fail
from sdlens.cli.options import option
from sdlens.epistemic.config import AnalyzeConfig, parse_measures
from sdlens.errors import InputError
from sdlens.fields import config_from

err = Console(stderr=True)


def register(app: typer.Typer) -> None:
    @app.command("report", help=COMMAND_HELP["report"], context_settings={"help_option_names": ["-h", "--help"]})
    def report_cmd(
        paths: Annotated[
            list[Path],
            typer.Argument(help="An experiment run, a sdlens eval folder, a folder of runs, or trace files / folders."),
        ],
        out: Annotated[
            Path | None,
            typer.Option(
                "--out", "-o", help="Where to write report.html / report.md (default: DIR, or FILE's stem + _report)."
            ),
        ] = None,
        lexicon: Annotated[str, option(AnalyzeConfig, "lexicon", "--lexicon", "-l")] = "paper",
        measures: Annotated[str, option(AnalyzeConfig, "measures", "--measures")] = "reflection,revisions",
        fmt: Annotated[str | None, option(AnalyzeConfig, "fmt", "--format", "-f")] = None,
        by: Annotated[str | None, option(AnalyzeConfig, "by", "--by")] = None,
    ) -> None:
        options = locals()
        from sdlens.report import build_report

        try:
            for p in paths:
                if not p.exists():
                    raise InputError(p, "no such file or folder")
            if len(paths) == 1 and _is_run_folder(paths[0]):
                path = build_report(paths[0], out)
            else:
                from sdlens.report.traces import write_trace_report

                config = config_from(AnalyzeConfig, options, measures=parse_measures(measures))
                first = paths[0]
                target = out if out is not None else first.parent / f"{first.stem}_report"
                path = write_trace_report(paths, config, target)
        except InputError as e:
            fail(e)
        typer.echo(str(path))
        typer.echo(str(path.with_name("report.md")))


def _is_run_folder(path: Path) -> bool:
    """An experiment, eval or lab folder (or a folder of them), as opposed to a trace folder (verl dumps, TRL
    completions, a saved data set)."""
    from sdlens.report.build import _summary, detect_kind

    if not path.is_dir():
        return False
    if detect_kind(path) or _summary(path):
        return True
    try:
        from sdlens.io import detect_format

        detect_format(path)
        return False
    except InputError:
        return True  # not traces either: the run report says what it looked for
