"""CLI: ``sdlens experiment richer-context | guided-sft | coverage`` (thin over :mod:`sdlens.experiments`).

Each command runs (or resumes) one of the paper's controlled experiments into ``--out``, prints its table, and
writes ``report.html`` / ``report.md`` there (``--no-report`` skips that). Bad input prints one line and exits 2.
"""

from __future__ import annotations

from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from sdlens.errors import InputError

err = Console(stderr=True)


def _fail(e: BaseException) -> NoReturn:
    from rich.markup import escape

    err.print(f"[red]error:[/red] {escape(str(e))}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def _list(values: list[str] | None) -> list[str]:
    """Repeatable options that also take comma-separated values."""
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


def _sets(values: list[str] | None, flag: str = "--set") -> dict[str, Any]:
    from sdlens.train.config import parse_set

    out: dict[str, Any] = {}
    for item in values or []:
        try:
            k, v = parse_set(item)
        except ValueError as e:
            raise InputError(None, str(e), field=flag) from None
        out[k] = v
    return out


def _window(text: str) -> tuple[int, int]:
    lo, sep, hi = text.partition("-")
    try:
        return (int(lo), int(hi)) if sep else (int(lo), int(lo))
    except ValueError:
        raise InputError(None, f"expected LOW-HIGH such as 1-4, got {text!r}", field="window") from None


def _eval_options(base_url, device, dtype) -> dict[str, Any] | None:
    opts = {k: v for k, v in (("base_url", base_url), ("device", device), ("dtype", dtype)) if v is not None}
    return opts or None


def _est(e: dict[str, Any] | None, digits: int = 2) -> str:
    from sdlens.report.blocks import fmt_ci

    return fmt_ci(e, digits)


def _val(e: dict[str, Any] | None, digits: int = 2) -> str:
    from sdlens.report.blocks import fmt

    return fmt(None if not e else e.get("value"), digits)


def _report(out: str, enabled: bool) -> None:
    if not enabled:
        return
    from sdlens.report import build_report

    path = build_report(out)
    err.print(f"report: {path}")


# Options shared by the three commands.
ModelOpt = Annotated[str, typer.Option("--model", "-m", help="smollm2-135m, a local model folder, or a hub id.")]
OutOpt = Annotated[str, typer.Option("--out", "-o", help="Run folder (a rerun resumes it).")]
PresetOpt = Annotated[str | None, typer.Option("--preset", help="Sampling preset: paper-think, paper-nothink, greedy.")]
TempOpt = Annotated[float | None, typer.Option("--temperature", help="Overrides the preset.")]
TopPOpt = Annotated[float | None, typer.Option("--top-p", help="Overrides the preset.")]
TopKOpt = Annotated[int | None, typer.Option("--top-k", help="top_k (richer-context default: 20, the paper's).")]
TokOpt = Annotated[int | None, typer.Option("--max-tokens", help="Generation budget per sample.")]
ThinkOpt = Annotated[str | None, typer.Option("--thinking", help="on / off / unset (enable_thinking).")]
BackendOpt = Annotated[str, typer.Option("--backend", help="transformers, vllm or openai.")]
BaseUrlOpt = Annotated[str | None, typer.Option("--base-url", help="OpenAI-compatible server (backend openai).")]
DeviceOpt = Annotated[str | None, typer.Option("--device", help="transformers device: auto, cpu, cuda.")]
DtypeOpt = Annotated[str | None, typer.Option("--dtype", help="Model dtype for generation.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Run seed.")]
GraderOpt = Annotated[str, typer.Option("--grader", help="math-verify, paper-reward, or a registered grader.")]
BatchOpt = Annotated[int | None, typer.Option("--batch-size", help="Rows per generation chunk.")]
LexOpt = Annotated[str, typer.Option("--lexicon", "-l", help="Hedge lexicon: paper, words, companion, a TOML file.")]
SetOpt = Annotated[
    list[str] | None, typer.Option("--set", "-s", help="Training override key=value (sdlens or TRL field); repeatable.")
]
ReportOpt = Annotated[bool, typer.Option("--report/--no-report", help="Write report.html / report.md at the end.")]


def _sampling(preset, temperature, top_p, top_k, max_tokens, thinking) -> dict[str, Any]:
    values = {
        "preset": preset,
        "temperature": temperature,
        "top_p": top_p,
        "top_k": top_k,
        "max_new_tokens": max_tokens,
        "thinking": thinking,
    }
    return {k: v for k, v in values.items() if v is not None}


def _table1(summary: dict[str, Any]) -> Table:
    from sdlens.report.sections import CONTEXT_LABELS

    sel = summary["selection"]
    t = Table(title=f"Table 1 — {sel['kept']} problems kept of {sel['scanned']} scanned", title_justify="left")
    for col in ("context", "score", "length (tokens)", "E per response", "E per 1k tokens"):
        t.add_column(col, justify="left" if col == "context" else "right")
    for ctx, st in summary["contexts"].items():
        t.add_row(
            CONTEXT_LABELS.get(ctx, ctx),
            _est(st["score"]),
            _est(st["length"], 1),
            _est(st["E"], 1),
            _est(st["E_per_1k"], 1),
        )
    return t


def _table2(summary: dict[str, Any]) -> Table:
    from sdlens.report.sections import MODEL_LABELS

    ds = summary["datasets"]
    t = Table(
        title=f"Table 2 — accuracy (avg@{summary['n_eval']}); SFT sets of {ds['unguided']['examples']} examples",
        title_justify="left",
    )
    t.add_column("model")
    for b in summary["benchmarks"]:
        t.add_column(b, justify="right")
        t.add_column(f"E ({b})", justify="right")
    for m, per in summary["models"].items():
        cells = []
        for b in summary["benchmarks"]:
            cells += [_est(per[b]["score"]), _est(per[b]["E"], 1)]
        t.add_row(MODEL_LABELS.get(m, m), *cells)
    return t


def _coverage_table(summary: dict[str, Any]) -> Table:
    t = Table(title="Coverage — step 0 → last step [95% CI]", title_justify="left")
    for col in ("coverage", "method", "steps", "in-domain acc", "OOD acc", "E (OOD)", "length (OOD)"):
        t.add_column(col, justify="left" if col in ("coverage", "method") else "right")
    for lvl, ms in summary["curves"].items():
        for m, c in ms.items():
            a, b = c["points"][0], c["points"][-1]
            t.add_row(
                lvl,
                m,
                ",".join(map(str, c["steps"])),
                f"{_val(a['in_domain_acc'])} → {_est(b['in_domain_acc'])}",
                f"{_val(a['ood_acc'])} → {_est(b['ood_acc'])}",
                f"{_val(a['E'], 1)} → {_est(b['E'], 1)}",
                f"{_val(a['length'], 0)} → {_est(b['length'], 0)}",
            )
    return t


def register(app: typer.Typer) -> None:
    exp = typer.Typer(
        name="experiment",
        help="The paper's controlled experiments: richer-context (section 3), guided-sft (4), coverage (5-6).",
        no_args_is_help=True,
    )
    app.add_typer(exp, name="experiment")

    @exp.command("richer-context", context_settings={"help_option_names": ["-h", "--help"]})
    def richer_context_cmd(
        model: ModelOpt,
        data: Annotated[str, typer.Option("--data", "-d", help="Problems: benchmark name, verl parquet, JSONL.")],
        out: OutOpt,
        n: Annotated[int, typer.Option("--n", min=1, help="Samples per problem (paper: 8).")] = 8,
        window: Annotated[str, typer.Option("--window", help="Correct-of-n window kept, LOW-HIGH.")] = "1-4",
        max_problems: Annotated[int, typer.Option("--max-problems", min=1, help="Problems to keep.")] = 100,
        scan_batch: Annotated[int, typer.Option("--scan-batch", min=1, help="Problems per scanning step.")] = 128,
        contexts: Annotated[
            list[str] | None, typer.Option("--contexts", help="none,s,s-nothink,regen (default: all).")
        ] = None,
        preset: PresetOpt = None,
        temperature: TempOpt = None,
        top_p: TopPOpt = None,
        top_k: TopKOpt = None,
        max_tokens: TokOpt = None,
        thinking: ThinkOpt = None,
        backend: BackendOpt = "transformers",
        base_url: BaseUrlOpt = None,
        device: DeviceOpt = None,
        dtype: DtypeOpt = None,
        seed: SeedOpt = 0,
        grader: GraderOpt = "math-verify",
        batch_size: BatchOpt = None,
        lexicon: LexOpt = "paper",
        report: ReportOpt = True,
    ) -> None:
        """Section 3: Table 1 (score, length, E, E per 1k tokens with CIs) under four conditioning contexts."""
        from sdlens.experiments.richer_context import RicherContextConfig, run_richer_context

        try:
            kw: dict[str, Any] = _sampling(preset, temperature, top_p, top_k, max_tokens, thinking)
            if contexts:
                kw["contexts"] = tuple(_list(contexts))
            cfg = RicherContextConfig(
                model=model,
                data=data,
                out=out,
                n=n,
                window=_window(window),
                max_problems=max_problems,
                scan_batch=scan_batch,
                backend=backend,
                eval_options=_eval_options(base_url, device, dtype),
                seed=seed,
                grader=grader,
                batch_size=batch_size,
                lexicon=lexicon,
                **kw,
            )
            summary = run_richer_context(cfg, console=err)
            if summary.get("warning"):
                err.print(f"[yellow]warning:[/yellow] {summary['warning']}")
            else:
                Console().print(_table1(summary))
            _report(out, report)
        except InputError as e:
            _fail(e)

    @exp.command("guided-sft", context_settings={"help_option_names": ["-h", "--help"]})
    def guided_sft_cmd(
        model: ModelOpt,
        out: OutOpt,
        data: Annotated[str | None, typer.Option("--data", "-d", help="Problems for the section-3 traces.")] = None,
        from_richer_context: Annotated[
            str | None, typer.Option("--from-richer-context", help="Reuse a richer-context run folder's traces.")
        ] = None,
        benchmarks: Annotated[
            list[str] | None, typer.Option("--benchmark", "-b", help="Eval sets (default aime24); repeatable / a,b.")
        ] = None,
        n_eval: Annotated[int, typer.Option("--n-eval", min=1, help="Samples per eval problem (paper 16).")] = 16,
        limit: Annotated[int | None, typer.Option("--limit", min=1, help="First N problems per eval set.")] = None,
        max_examples: Annotated[int, typer.Option("--max-examples", min=1, help="Examples per SFT set.")] = 800,
        n: Annotated[int, typer.Option("--n", min=1, help="Trace samples per problem (section 3).")] = 8,
        window: Annotated[str, typer.Option("--window", help="Section-3 window, LOW-HIGH.")] = "1-4",
        max_problems: Annotated[int, typer.Option("--max-problems", min=1, help="Section-3 problems.")] = 800,
        trace_max_tokens: Annotated[
            int | None, typer.Option("--trace-max-tokens", help="Generation budget of the traces.")
        ] = 32768,
        preset: PresetOpt = None,
        temperature: TempOpt = None,
        top_p: TopPOpt = None,
        top_k: TopKOpt = None,
        max_tokens: TokOpt = None,
        thinking: ThinkOpt = None,
        backend: BackendOpt = "transformers",
        base_url: BaseUrlOpt = None,
        device: DeviceOpt = None,
        dtype: DtypeOpt = None,
        seed: SeedOpt = 0,
        grader: GraderOpt = "math-verify",
        batch_size: BatchOpt = None,
        lexicon: LexOpt = "paper",
        set_: SetOpt = None,
        report: ReportOpt = True,
    ) -> None:
        """Section 4: SFT on unguided vs solution-guided correct traces, then Table 2 and hedge counts."""
        from sdlens.experiments.guided_sft import GuidedSFTConfig, run_guided_sft

        try:
            cfg = GuidedSFTConfig(
                model=model,
                data=data or "",
                out=out,
                benchmarks=_list(benchmarks) or ["aime24"],
                n_eval=n_eval,
                limit=limit,
                max_examples=max_examples,
                from_richer_context=from_richer_context,
                n=n,
                window=_window(window),
                max_problems=max_problems,
                trace_max_new_tokens=trace_max_tokens,
                train_overrides=_sets(set_),
                backend=backend,
                eval_options=_eval_options(base_url, device, dtype),
                seed=seed,
                grader=grader,
                batch_size=batch_size,
                lexicon=lexicon,
                **_sampling(preset, temperature, top_p, top_k, max_tokens, thinking),
            )
            summary = run_guided_sft(cfg, console=err)
            Console().print(_table2(summary))
            _report(out, report)
        except InputError as e:
            _fail(e)

    @exp.command("coverage", context_settings={"help_option_names": ["-h", "--help"]})
    def coverage_cmd(
        model: ModelOpt,
        out: OutOpt,
        coverage: Annotated[
            list[str] | None, typer.Option("--coverage", help="Levels, e.g. 1x64,8x8,64 (or training files).")
        ] = None,
        ood: Annotated[list[str] | None, typer.Option("--ood", help="OOD eval sets (default aime24).")] = None,
        pool: Annotated[str | None, typer.Option("--pool", help="Build the levels from this problem file.")] = None,
        in_domain: Annotated[str | None, typer.Option("--in-domain", help="In-domain eval set.")] = None,
        methods: Annotated[
            list[str] | None,
            typer.Option(
                "--method",
                "--methods",
                help="Training presets, comma-separated or repeated (default "
                "sdpo-paper,grpo-paper; any train preset, e.g. the mitigations').",
            ),
        ] = None,
        method_set: Annotated[
            list[str] | None, typer.Option("--method-set", help="METHOD:key=value, for one method; repeatable.")
        ] = None,
        eval_every: Annotated[
            int | None, typer.Option("--eval-every", min=1, help="Checkpoint + eval every N.")
        ] = None,
        n_eval: Annotated[int, typer.Option("--n-eval", min=1, help="Samples per eval problem.")] = 4,
        reward: Annotated[
            str | None, typer.Option("--reward", help="Training reward (default: the --grader; paper: paper-reward).")
        ] = None,
        limit: Annotated[int | None, typer.Option("--limit", min=1, help="First N problems per eval set.")] = None,
        preset: PresetOpt = None,
        temperature: TempOpt = None,
        top_p: TopPOpt = None,
        top_k: TopKOpt = None,
        max_tokens: TokOpt = None,
        thinking: ThinkOpt = None,
        backend: BackendOpt = "transformers",
        base_url: BaseUrlOpt = None,
        device: DeviceOpt = None,
        dtype: DtypeOpt = None,
        seed: SeedOpt = 0,
        grader: GraderOpt = "math-verify",
        batch_size: BatchOpt = None,
        lexicon: LexOpt = "paper",
        set_: SetOpt = None,
        report: ReportOpt = True,
    ) -> None:
        """Sections 5-6: SDPO vs GRPO per coverage level, in-domain and OOD curves of accuracy, length and E."""
        from sdlens.experiments.coverage import CoverageConfig, run_coverage

        try:
            per_method: dict[str, dict[str, Any]] = {}
            for item in method_set or []:
                name, sep, kv = item.partition(":")
                if not sep:
                    raise InputError(None, f"expected METHOD:key=value, got {item!r}", field="--method-set")
                per_method.setdefault(name, {}).update(_sets([kv], "--method-set"))
            kw: dict[str, Any] = _sampling(preset, temperature, top_p, top_k, max_tokens, thinking)
            for name, values in (("coverage", coverage), ("ood", ood), ("methods", methods)):
                if values:
                    kw[name] = _list(values)
            cfg = CoverageConfig(
                model=model,
                out=out,
                pool=pool,
                in_domain=in_domain,
                method_overrides=per_method,
                train_overrides=_sets(set_),
                eval_every=eval_every,
                reward=reward,
                n_eval=n_eval,
                limit=limit,
                backend=backend,
                eval_options=_eval_options(base_url, device, dtype),
                seed=seed,
                grader=grader,
                batch_size=batch_size,
                lexicon=lexicon,
                **kw,
            )
            summary = run_coverage(cfg, console=err)
            Console().print(_coverage_table(summary))
            _report(out, report)
        except InputError as e:
            _fail(e)
