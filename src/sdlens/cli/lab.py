"""CLI: ``sdlens lab run`` — the CPU model organism (a thin layer over :mod:`sdlens.lab`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from sdlens.cli.commands import COMMAND_HELP
from sdlens.cli.common import fail
from sdlens.cli.options import option
from sdlens.errors import InputError
from sdlens.fields import field_default
from sdlens.lab.config import CORPORA, LabConfig, lab_config
from sdlens.lab.summary import summary_table

err = Console(stderr=True)


def register(app: typer.Typer) -> None:
    lab = typer.Typer(help=COMMAND_HELP["lab"], no_args_is_help=True)

    @lab.command("run")
    def run(
        out: Annotated[Path, option(LabConfig, "out", "--out", "-o")] = Path(field_default(LabConfig, "out")),
        quick: Annotated[bool, typer.Option("--quick", help="The demo: 1 seed, <= 15 minutes on 2 cores.")] = False,
        full: Annotated[bool, typer.Option("--full", help="The published numbers: 3 seeds, more steps.")] = False,
        seeds: Annotated[int | None, option(LabConfig, "seeds", "--seeds", min=1)] = None,
        threads: Annotated[int | None, option(LabConfig, "threads", "--threads", min=1)] = None,
        json_out: Annotated[bool, typer.Option("--json", help="Print summary.json instead of tables.")] = False,
        mitigations: Annotated[bool, option(LabConfig, "mitigations", "--mitigations")] = False,
        corpus: Annotated[str | None, option(LabConfig, "corpus", "--corpus")] = None,
    ) -> None:
        """Pretrain the organism, run richer-context, guided-SFT and coverage (SDPO vs GRPO) on it, and write
        summary.json and report.html.

        Example: sdlens lab run --quick --out out/lab
        """
        import json

        from sdlens.lab.run import run_lab

        if quick and full:
            err.print("[red]error:[/red] choose one of --quick, --full")
            raise typer.Exit(2)
        mode = "full" if full else "quick"
        t0 = time.time()
        if corpus is not None and corpus not in CORPORA:
            err.print(f"[red]error:[/red] --corpus must be one of {', '.join(CORPORA)}, got {corpus!r}")
            raise typer.Exit(2)
        try:
            cfg = lab_config(
                mode, out=str(out), seeds=seeds, threads=threads, mitigations=mitigations or None, corpus=corpus
            )
            summary = run_lab(cfg, console=err)
        except InputError as e:
            fail(e)
        if json_out:
            print(json.dumps(summary, default=str))
            return
        console = Console()
        console.print(summary_table(summary))
        console.print(
            f"wall time {time.time() - t0:.0f} s; {out / 'summary.json'}"
            + (f"; {summary['report']}" if summary.get("report") else "")
        )

    app.add_typer(lab, name="lab")
