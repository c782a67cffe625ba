"""CLI: ``sdlens analyze`` and ``sdlens compare`` (thin over :mod:`sdlens.epistemic.analyze` and
:mod:`sdlens.epistemic.compare`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from sdlens.cli.commands import COMMAND_HELP
from sdlens.cli.common import emit_json, fail, stderr_console
from sdlens.cli.fastpath import FILES_HELP, OPTIONS, analyze_config, run_analyze
from sdlens.cli.options import option
from sdlens.epistemic.segment import Scope
from sdlens.errors import InputError


def _option(name: str) -> Any:
    """The typer option of ``sdlens.cli.fastpath.OPTIONS[name]`` (the argparse path reads the same declaration)."""
    spec = OPTIONS[name]
    if spec.owner is None:
        return typer.Option(*spec.flags, help=spec.help_text())
    return option(spec.owner, spec.field, *spec.flags)


# Options shared by analyze and compare; their help is the config fields' (sdlens.epistemic.config).
FormatOpt = Annotated[str | None, _option("fmt")]
LexiconOpt = Annotated[str, _option("lexicon")]
ScopeOpt = Annotated[Scope, _option("scope")]
ByOpt = Annotated[str | None, _option("by")]
TokOpt = Annotated[str | None, _option("tokenizer")]
TextKeyOpt = Annotated[str | None, _option("text_key")]
IdKeyOpt = Annotated[str | None, _option("id_key")]
GroupKeyOpt = Annotated[str | None, _option("group_key")]
CorrectKeyOpt = Annotated[str | None, _option("correct_key")]
SkipBadOpt = Annotated[bool, _option("skip_bad")]
JsonOpt = Annotated[bool, _option("json")]
MeasuresOpt = Annotated[str | None, _option("measures")]
ReflectionLexOpt = Annotated[str, _option("reflection_lexicon")]
ForkEntropyOpt = Annotated[float, _option("fork_entropy")]
JudgeModelOpt = Annotated[str | None, _option("judge_model")]
JudgeBackendOpt = Annotated[str, _option("judge_backend")]
JudgeUrlOpt = Annotated[str | None, _option("judge_base_url")]
JudgeCacheOpt = Annotated[Path, _option("judge_cache")]


def analyze(
    files: Annotated[list[Path], typer.Argument(help=FILES_HELP)],
    fmt: FormatOpt = None,
    lexicon: LexiconOpt = "paper",
    scope: ScopeOpt = Scope.full,
    by: ByOpt = None,
    tokenizer: TokOpt = None,
    text_key: TextKeyOpt = None,
    id_key: IdKeyOpt = None,
    group_key: GroupKeyOpt = None,
    correct_key: CorrectKeyOpt = None,
    skip_bad: SkipBadOpt = False,
    measures: MeasuresOpt = None,
    reflection_lexicon: ReflectionLexOpt = "reflection",
    fork_entropy: ForkEntropyOpt = 1.0,
    judge_model: JudgeModelOpt = None,
    judge_backend: JudgeBackendOpt = "transformers",
    judge_base_url: JudgeUrlOpt = None,
    judge_cache: JudgeCacheOpt = Path(".sdlens-judge-cache.jsonl"),
    json: JsonOpt = False,
) -> None:
    # the argparse path (sdlens.cli.fastpath) runs the same body; tests hold both parsers' values equal
    run_analyze(**locals())


def compare(
    a: Annotated[Path, typer.Argument(help="Run A (e.g. the base model's traces).")],
    b: Annotated[Path, typer.Argument(help="Run B (e.g. the self-distilled model's traces).")],
    fmt: FormatOpt = None,
    lexicon: LexiconOpt = "paper",
    scope: ScopeOpt = Scope.full,
    tokenizer: TokOpt = None,
    text_key: TextKeyOpt = None,
    id_key: IdKeyOpt = None,
    correct_key: CorrectKeyOpt = None,
    skip_bad: SkipBadOpt = False,
    n_boot: Annotated[int, typer.Option("--n-boot", min=100, help="Bootstrap resamples.")] = 2000,
    seed: Annotated[int, typer.Option("--seed", help="Bootstrap seed.")] = 0,
    measures: MeasuresOpt = None,
    reflection_lexicon: ReflectionLexOpt = "reflection",
    fork_entropy: ForkEntropyOpt = 1.0,
    judge_model: JudgeModelOpt = None,
    judge_backend: JudgeBackendOpt = "transformers",
    judge_base_url: JudgeUrlOpt = None,
    judge_cache: JudgeCacheOpt = Path(".sdlens-judge-cache.jsonl"),
    html: Annotated[
        Path | None, typer.Option("--html", help="Also write a self-contained side-by-side HTML report here.")
    ] = None,
    json: JsonOpt = False,
) -> None:
    options = locals()
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
