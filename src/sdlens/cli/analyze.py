"""CLI: ``sdlens analyze`` and ``sdlens compare`` (thin over :mod:`sdlens.epistemic.analyze` and
:mod:`sdlens.epistemic.compare`)."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from sdlens.cli.commands import COMMAND_HELP
from sdlens.cli.common import emit_json, fail, stderr_console
from sdlens.cli.fastpath import ANALYZE_OPTIONS, FILES_HELP, OPTIONS, analyze_config, run_analyze
from sdlens.cli.options import add_options, keyword, option
from sdlens.errors import InputError


def _option(name: str) -> Any:
    """The typer option of ``sdlens.cli.fastpath.OPTIONS[name]`` (the argparse path reads the same declaration)."""
    spec = OPTIONS[name]
    if spec.owner is None:
        return typer.Option(*spec.flags, help=spec.help_text())
    return option(spec.owner, spec.field, *spec.flags)


def _shared(*names: str) -> list[inspect.Parameter]:
    """Options of ``sdlens.cli.fastpath.ANALYZE_OPTIONS`` as keyword parameters of a typer command: declared there
    once for both parsers, each with the default the argparse path gives it (its config field's, unless declared)."""
    params = []
    for name in names:
        spec = OPTIONS[name]
        default = spec.default_value()
        kind = spec.kind if default is not None else spec.kind | None
        params.append(keyword(name, Annotated[kind, _option(name)], default))
    return params


@add_options([], _shared(*(o.name for o in ANALYZE_OPTIONS)), into="options")
def analyze(files: Annotated[list[Path], typer.Argument(help=FILES_HELP)], *, options: dict[str, Any]) -> None:
    # the argparse path (sdlens.cli.fastpath) runs the same body; tests hold both parsers' values equal
    run_analyze(files=files, **options)


# compare takes analyze's options but --by and --group-key; its --help lists its bootstrap options before --measures
# and --html before --json
COMPARE_OPTIONS = [o.name for o in ANALYZE_OPTIONS if o.name not in ("by", "group_key", "json")]
_MEASURES_AT = COMPARE_OPTIONS.index("measures")


@add_options(
    _shared(*COMPARE_OPTIONS[:_MEASURES_AT]), _shared(*COMPARE_OPTIONS[_MEASURES_AT:]), into="options", before=("html",)
)
def compare(
    a: Annotated[Path, typer.Argument(help="Run A (e.g. the base model's traces).")],
    b: Annotated[Path, typer.Argument(help="Run B (e.g. the self-distilled model's traces).")],
    n_boot: Annotated[int, typer.Option("--n-boot", min=100, help="Bootstrap resamples.")] = 2000,
    seed: Annotated[int, typer.Option("--seed", help="Bootstrap seed.")] = 0,
    html: Annotated[
        Path | None, typer.Option("--html", help="Also write a self-contained side-by-side HTML report here.")
    ] = None,
    json: Annotated[bool, _option("json")] = False,
    *,
    options: dict[str, Any],
) -> None:
    from sdlens.epistemic.compare import compare as run_compare

    try:
        config = analyze_config(options)
        res = run_compare([a], [b], config, n_boot=n_boot, seed=seed)
        if html is not None:
            from sdlens.report.traces import write_comparison_report

            write_comparison_report([a], [b], config, res, html)
            stderr_console().print(f"wrote {html}")
    except InputError as e:
        fail(e)
    if json:
        emit_json(res)
        return
    from sdlens.report.tables import comparison_table

    Console().print(comparison_table(res))


def register(app: typer.Typer) -> None:
    app.command("analyze", help=COMMAND_HELP["analyze"])(analyze)
    app.command("compare", help=COMMAND_HELP["compare"])(compare)
