"""`make demo`: analyse example traces and compare two runs (until the CPU model organism lands).

The traces are synthetic, written by ``sdlens.examples`` (a template, not a model) into ``out/demo/``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from rich.console import Console

from sdlens.epistemic.analyze import AnalyzeConfig, analyze
from sdlens.epistemic.compare import compare
from sdlens.examples import write_example_runs
from sdlens.report.tables import analysis_tables, comparison_table


def main(out_dir: str = "out/demo") -> int:
    console = Console()
    base, confident = write_example_runs(Path(out_dir))
    console.rule("sdlens demo — synthetic example traces (template-written, not model outputs)")
    console.print(f"wrote {base} and {confident}\n")
    console.print(f"[bold]$ sdlens analyze {base} --by correct[/bold]")
    console.print(analysis_tables(analyze([base], AnalyzeConfig(by="correct"))))
    console.print(f"\n[bold]$ sdlens compare {base} {confident}[/bold]")
    console.print(comparison_table(compare([base], [confident])))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
