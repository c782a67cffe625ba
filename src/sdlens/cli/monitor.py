"""CLI: ``sdlens monitor DIR`` (a thin layer over :func:`sdlens.monitor.read_run`, docs/monitor.md)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sdlens.cli.commands import COMMAND_HELP
from sdlens.cli.common import emit_json, fail
from sdlens.cli.options import option
from sdlens.errors import InputError
from sdlens.fields import config_from, field_default
from sdlens.monitor.config import DetectorConfig, OfflineConfig
from sdlens.monitor.plot import plot_run
from sdlens.report.tables import number

err = Console(stderr=True)

_STATE_STYLE = {"ok": "green", "warning": "yellow", "suppressing": "bold red", None: "dim"}


LEGEND = (
    "E: hedges per response (paper counter); /1k: hedges per 1k {unit}; any: share of responses with a hedge; "
    "len: mean length ({unit}); acc: share correct; /1k ok, /1k bad: rate in correct / incorrect responses"
)
MECH_LEGEND = "; gap: teacher-minus-student log-prob at hedge positions minus elsewhere; loss sh: hedges' loss share"


def steps_table(res: dict[str, Any]) -> Table:
    steps = res["steps"]
    next((r.get("units") for r in steps if r.get("units")), "tokens")
    t = Table(title=f"Epistemic telemetry per step ({res['source']})", box=box.SIMPLE_HEAD, pad_edge=False)
    # short headers so the table fits 80 columns; LEGEND spells them out
    cols = [
        ("step", "step", None),
        ("n", "n_responses", None),
        ("E", "hedges_per_response", 2),
        ("/1k", "hedges_per_1k_tokens", 2),
        ("any", "share_with_any", 2),
        ("len", "mean_length", 0),
        ("acc", "accuracy", 2),
        ("/1k ok", "correct/hedges_per_1k_tokens", 2),
        ("/1k bad", "incorrect/hedges_per_1k_tokens", 2),
    ]
    has_mech = any(r.get("mechanism") for r in steps)
    for title, _, _ in cols:
        t.add_column(title, justify="right", no_wrap=True)
    if has_mech:
        t.add_column("gap", justify="right", no_wrap=True)
        t.add_column("loss sh", justify="right", no_wrap=True)
    t.add_column("state", no_wrap=True)
    for r in steps:
        row = [number(r.get(key), d) if d is not None else number(r.get(key)) for _, key, d in cols]
        if has_mech:
            m = r.get("mechanism") or {}
            row += [number(m.get("gap_difference"), 3), number(m.get("hedge_loss_share"), 3)]
        state = r.get("state")
        row.append(f"[{_STATE_STYLE.get(state, '')}]{state or '-'}[/]")
        t.add_row(*row)
    return t


def verdict_line(res: dict[str, Any]) -> str:
    v = res["verdict"]
    fired = v.get("first_fired") or {}
    when = ", ".join(f"{s} first at step {step}" for s, step in sorted(fired.items(), key=lambda kv: kv[1] or 0))
    return f"verdict: {v['state']} - {v['reason']}" + (f" ({when})" if when else "")


def monitor(
    path: Annotated[str, typer.Argument(help="A run folder, its epistemic.jsonl, verl dumps, TRL completions.")],
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object: steps and verdict.")] = False,
    plot: Annotated[str | None, typer.Option("--plot", help="Write a figure (PNG, SVG, PDF by suffix).")] = None,
    fmt: Annotated[str | None, option(OfflineConfig, "fmt", "--format", "-f")] = None,
    tokenizer: Annotated[str | None, option(OfflineConfig, "tokenizer", "--tokenizer")] = None,
    lexicon: Annotated[str, option(OfflineConfig, "lexicon", "--lexicon", "-l")] = field_default(
        OfflineConfig, "lexicon"
    ),
    baseline_steps: Annotated[int, option(DetectorConfig, "baseline_steps", "--baseline-steps", min=1)] = field_default(
        DetectorConfig, "baseline_steps"
    ),
) -> None:
    options = locals()
    from sdlens.monitor.offline import read_run

    cfg = config_from(OfflineConfig, options, detector=config_from(DetectorConfig, options))
    try:
        res = read_run(path, fmt=cfg.fmt, tokenizer=cfg.tokenizer, lexicon=cfg.lexicon, detector=cfg.detector)
        if plot:
            plot_run(res, plot)
    except InputError as e:
        fail(e)
    if json_out:
        emit_json(res)
        return
    out = Console(soft_wrap=True, width=max(Console().width, 100))  # the table needs ~90 columns
    out.print(steps_table(res))
    unit = next((r.get("units") for r in res["steps"] if r.get("units")), "tokens")
    has_mech = any(r.get("mechanism") for r in res["steps"])
    out.print(escape(LEGEND.format(unit=unit) + (MECH_LEGEND if has_mech else "")), style="dim", highlight=False)
    for note in res["notes"]:
        out.print(f"note: {escape(note)}", highlight=False)
    out.print(escape(verdict_line(res)), highlight=False)
    if plot:
        out.print(f"figure: {escape(plot)}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``sdlens monitor`` to the main app."""
    app.command("monitor", help=COMMAND_HELP["monitor"])(monitor)
