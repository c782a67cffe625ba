"""CLI: ``sdlens probe`` (thin over :func:`sdlens.behaviour.probe.run_probe`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from sdlens.cli.commands import COMMAND_HELP
from sdlens.cli.common import emit_json, fail, progress_bar
from sdlens.cli.options import option
from sdlens.epistemic.config import ProbeConfig
from sdlens.errors import InputError
from sdlens.fields import config_from
from sdlens.io.keys import KeyMap


def register(app: typer.Typer) -> None:
    @app.command("probe", help=COMMAND_HELP["probe"], context_settings={"help_option_names": ["-h", "--help"]})
    def probe_cmd(
        model: Annotated[str, option(ProbeConfig, "model", "--model")],
        data: Annotated[Path, option(ProbeConfig, "data", "--data")],
        context: Annotated[str, option(ProbeConfig, "context", "--context")] = "hint",
        problems: Annotated[str | None, option(ProbeConfig, "problems", "--problems")] = None,
        lexicon: Annotated[str, option(ProbeConfig, "lexicon", "--lexicon", "-l")] = "words",
        fmt: Annotated[str | None, option(ProbeConfig, "fmt", "--format", "-f")] = None,
        text_key: Annotated[str | None, option(KeyMap, "text_key", "--text-key")] = None,
        id_key: Annotated[str | None, option(KeyMap, "id_key", "--id-key")] = None,
        correct_key: Annotated[str | None, option(KeyMap, "correct_key", "--correct-key")] = None,
        limit: Annotated[int | None, option(ProbeConfig, "limit", "--limit", min=1)] = None,
        max_tokens: Annotated[int, option(ProbeConfig, "max_tokens", "--max-tokens", min=1)] = 1024,
        device: Annotated[str, option(ProbeConfig, "device", "--device")] = "cpu",
        save_tokens: Annotated[Path | None, option(ProbeConfig, "save_tokens", "--save-tokens")] = None,
        json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON line.")] = False,
    ) -> None:
        options = locals()
        config = config_from(ProbeConfig, options, keys=config_from(KeyMap, options))
        from sdlens.behaviour.probe import run_probe

        try:
            with progress_bar("scoring", "responses") as bar:
                task = bar.add_task("score", total=limit)
                res = run_probe(config, progress=lambda n: bar.advance(task, n))
        except InputError as e:
            fail(e)
        if json:
            emit_json(res)
            return
        Console().print(probe_table(res))


def _f(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def probe_table(res: dict) -> Table:
    t = Table(title=f"PMI of the context '{res['context']}' (teacher - student log-prob), {res['model']}")
    t.add_column("tokens")
    t.add_column("mean u", justify="right")
    t.add_column("n", justify="right")
    t.add_column("share u < 0", justify="right")
    if res["context"] == "none":
        t.add_row("all (no context: student scores only)", "-", str(res["n_tokens"]), "-")
        return t
    t.add_row("hedge tokens", _f(res["hedge_pmi_mean"]), str(res["n_hedge_tokens"]), "")
    t.add_row("other tokens", _f(res["other_pmi_mean"]), str(res["n_other_tokens"]), "")
    lo, hi = res["hedge_minus_other_ci"]
    t.add_row("hedge - other (95% CI over problems)", f"{_f(res['hedge_minus_other'])} [{_f(lo)}, {_f(hi)}]", "", "")
    for word, d in res["per_word"].items():
        t.add_row(f"  {word}", _f(d["pmi_mean"]), str(d["n"]), _f(d["share_negative"], 2))
    return t
