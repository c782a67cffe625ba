"""CLI: ``sdlens analyze`` and ``sdlens compare`` (thin over :mod:`sdlens.epistemic.analyze` and
:mod:`sdlens.epistemic.compare`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from sdlens.cli.common import emit_json, err, fail
from sdlens.cli.options import option
from sdlens.epistemic.config import AnalyzeConfig, JudgeConfig, MeasureOptions
from sdlens.epistemic.segment import Scope
from sdlens.errors import InputError
from sdlens.io.keys import KeyMap

# Options shared by analyze and compare; their help is the config fields' (sdlens.epistemic.config).
FormatOpt = Annotated[str | None, option(AnalyzeConfig, "fmt", "--format", "-f")]
LexiconOpt = Annotated[str, option(AnalyzeConfig, "lexicon", "--lexicon", "-l")]
ScopeOpt = Annotated[Scope, option(AnalyzeConfig, "scope", "--scope")]
ByOpt = Annotated[str | None, option(AnalyzeConfig, "by", "--by")]
TokOpt = Annotated[str | None, option(AnalyzeConfig, "tokenizer", "--tokenizer")]
TextKeyOpt = Annotated[str | None, option(KeyMap, "text_key", "--text-key")]
IdKeyOpt = Annotated[str | None, option(KeyMap, "id_key", "--id-key")]
GroupKeyOpt = Annotated[str | None, option(KeyMap, "group_key", "--group-key")]
CorrectKeyOpt = Annotated[str | None, option(KeyMap, "correct_key", "--correct-key")]
SkipBadOpt = Annotated[bool, option(AnalyzeConfig, "skip_bad", "--skip-bad")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")]
MeasuresOpt = Annotated[str | None, option(AnalyzeConfig, "measures", "--measures")]
ReflectionLexOpt = Annotated[str, option(MeasureOptions, "reflection_lexicon", "--reflection-lexicon")]
ForkEntropyOpt = Annotated[float, option(MeasureOptions, "fork_entropy", "--fork-entropy")]
JudgeModelOpt = Annotated[str | None, option(JudgeConfig, "model", "--judge-model")]
JudgeBackendOpt = Annotated[str, option(JudgeConfig, "backend", "--judge-backend")]
JudgeUrlOpt = Annotated[str | None, option(JudgeConfig, "base_url", "--judge-base-url")]
JudgeCacheOpt = Annotated[Path, option(JudgeConfig, "cache", "--judge-cache")]


def _config(fmt, lexicon, scope, by, tokenizer, text_key, id_key, group_key, correct_key, skip_bad, behaviour=None):
    from sdlens.epistemic.measures import parse_measures

    keys = KeyMap(text_key=text_key, id_key=id_key, group_key=group_key, correct_key=correct_key)
    measures, reflection, fork_entropy, judge = behaviour or (None, "reflection", 1.0, None)
    return AnalyzeConfig(
        fmt=fmt,
        lexicon=lexicon,
        scope=scope,
        by=by,
        tokenizer=tokenizer,
        keys=keys,
        skip_bad=skip_bad,
        measures=parse_measures(measures),
        measure_options=MeasureOptions(reflection_lexicon=reflection, fork_entropy=fork_entropy, judged=judge),
    )


def _judge(model, backend, base_url, cache):
    if model is None:
        return None
    from sdlens.behaviour.judge import Judged

    return Judged(JudgeConfig(model=model, backend=backend, base_url=base_url, cache=cache))


def analyze(
    files: Annotated[list[Path], typer.Argument(help="Trace files or folders (verl dumps, TRL completions).")],
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
    """Epistemic verbalization in trace files: E per response (the paper's number), per 1k tokens, share of
    responses with any hedge, median / p90, per word, where in the response hedges fall, grouped by any key.

    Example: sdlens analyze outputs.jsonl --by correct --measures reflection,revisions
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from sdlens.epistemic.analyze import run_analysis

    try:
        judge = _judge(judge_model, judge_backend, judge_base_url, judge_cache)
        behaviour = (measures, reflection_lexicon, fork_entropy, judge)
        config = _config(
            fmt, lexicon, scope, by, tokenizer, text_key, id_key, group_key, correct_key, skip_bad, behaviour
        )
    except InputError as e:
        fail(e)
    columns = (TextColumn("counting"), BarColumn(), MofNCompleteColumn(), TextColumn("responses"), TimeElapsedColumn())
    try:
        with Progress(*columns, console=err, transient=True, disable=not err.is_terminal) as bar:
            task = bar.add_task("count", total=None)
            run = run_analysis(files, config, progress=lambda n: bar.advance(task, n))
        res = run.result()
    except InputError as e:
        fail(e)
    if json:
        emit_json(res)
        return
    from sdlens.report.tables import analysis_tables

    Console().print(analysis_tables(res))
    if res.get("skipped_records"):
        err.print(f"skipped {res['skipped_records']} bad record(s); first: {res['skipped_examples'][0]}")


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
    """Two runs side by side: E, hedges per 1k, share with any, length and each word, with bootstrap 95% CIs
    over problems, the ratio B/A, and a verdict on whether hedging fell significantly.

    Example: sdlens compare base.jsonl sdpo.jsonl
    """
    from sdlens.epistemic.compare import compare as run_compare

    try:
        judge = _judge(judge_model, judge_backend, judge_base_url, judge_cache)
        behaviour = (measures, reflection_lexicon, fork_entropy, judge)
        config = _config(fmt, lexicon, scope, None, tokenizer, text_key, id_key, None, correct_key, skip_bad, behaviour)
        res = run_compare([a], [b], config, n_boot=n_boot, seed=seed)
        if html is not None:
            from sdlens.report.traces import write_comparison_report

            write_comparison_report([a], [b], config, res, html)
            err.print(f"wrote {html}")
    except InputError as e:
        fail(e)
    if json:
        emit_json(res)
        return
    from sdlens.report.tables import comparison_table

    Console().print(comparison_table(res))


def register(app: typer.Typer) -> None:
    app.command("analyze")(analyze)
    app.command("compare")(compare)
