"""CLI: ``sdlens lab run`` — the CPU model organism (a thin layer over :mod:`sdlens.lab`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from sdlens.errors import InputError
from sdlens.lab.summary import summary_table

err = Console(stderr=True)


def register(app: typer.Typer) -> None:
    lab = typer.Typer(
        help="The CPU model organism: watch self-distillation silence doubt on a laptop.", no_args_is_help=True
    )

    @lab.command("run")
    def run(
        out: Annotated[Path, typer.Option("--out", "-o", help="Run folder (reruns reuse finished stages).")] = Path(
            "out/lab"
        ),
        quick: Annotated[bool, typer.Option("--quick", help="The demo: 1 seed, <= 15 minutes on 2 cores.")] = False,
        full: Annotated[bool, typer.Option("--full", help="The published numbers: 3 seeds, more steps.")] = False,
        seeds: Annotated[int | None, typer.Option("--seeds", min=1, help="Repeats (default: 1 quick, 3 full).")] = None,
        threads: Annotated[int | None, typer.Option("--threads", min=1, help="torch CPU threads.")] = None,
        json_out: Annotated[bool, typer.Option("--json", help="Print summary.json instead of tables.")] = False,
        mitigations: Annotated[
            bool,
            typer.Option(
                "--mitigations",
                help="Also train every mitigation preset on 8x8, beside sdpo-paper and grpo-paper (issue 10); "
                "a finished run folder can be rerun with it (only the new stage runs).",
            ),
        ] = False,
        corpus: Annotated[
            str | None,
            typer.Option(
                "--corpus",
                help="Pretraining corpus: transfer (default: no root-finding question under a hint) or scripted "
                "(hinted root-finding examples too: effect 1 is then a premise, labelled 'given (premise)').",
            ),
        ] = None,
    ) -> None:
        """Pretrain the organism, run richer-context, guided-SFT and coverage (SDPO vs GRPO) on it, and write
        summary.json and report.html.

        Example: sdlens lab run --quick --out out/lab
        """
        import json

        from sdlens.lab.config import lab_config
        from sdlens.lab.run import run_lab

        if quick and full:
            err.print("[red]error:[/red] choose one of --quick, --full")
            raise typer.Exit(2)
        mode = "full" if full else "quick"
        t0 = time.time()
        from sdlens.lab.pretrain import CORPORA

        if corpus is not None and corpus not in CORPORA:
            err.print(f"[red]error:[/red] --corpus must be one of {', '.join(CORPORA)}, got {corpus!r}")
            raise typer.Exit(2)
        try:
            cfg = lab_config(
                mode, out=str(out), seeds=seeds, threads=threads, mitigations=mitigations or None, corpus=corpus
            )
            summary = run_lab(cfg, console=err)
        except InputError as e:
            err.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
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
