"""CLI: ``sdlens experiment richer-context | guided-sft | coverage`` (thin over :mod:`sdlens.experiments`).

Each command runs (or resumes) one of the paper's controlled experiments into ``--out``, prints its table, and
writes ``report.html`` / ``report.md`` there (``--no-report`` skips that). Bad input prints one line and exits 2.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from sdlens.cli.commands import COMMAND_HELP
from sdlens.cli.common import fail
from sdlens.cli.options import add_options, keyword, option
from sdlens.errors import InputError
from sdlens.eval_config import EvalConfig
from sdlens.experiments.config import CoverageConfig, EvalSettings, GuidedSFTConfig, RicherContextConfig
from sdlens.fields import config_from, field_default
from sdlens.train.config import parse_set

err = Console(stderr=True)


def _list(values: list[str] | None) -> list[str]:
    """Repeatable options that also take comma-separated values."""
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


def _sets(values: list[str] | None, flag: str = "--set") -> dict[str, Any]:
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


def _run(
    config: Callable[[], EvalSettings],
    experiment: Callable[..., dict[str, Any]],
    table: Callable[[dict[str, Any]], Table],
    report: bool,
) -> None:
    """The body of every experiment command: build its config, run the experiment, print its warning or its table,
    then write its report if asked; bad input anywhere prints one line and exits 2."""
    try:
        cfg = config()
        summary = experiment(cfg, console=err)
        if summary.get("warning"):
            err.print(f"[yellow]warning:[/yellow] {summary['warning']}")
        else:
            Console().print(table(summary))
        if report:
            from sdlens.report import build_report

            err.print(f"report: {build_report(cfg.out)}")
    except InputError as e:
        fail(e)


def _eval_settings(cls: type) -> Any:
    """The options every experiment takes, declared once, their help from ``cls``'s fields (an
    :class:`~sdlens.experiments.config.EvalSettings`); the command gets them as ``settings``."""
    head = [
        keyword("model", Annotated[str, option(cls, "model", "--model", "-m")]),
        keyword("out", Annotated[str, option(cls, "out", "--out", "-o")]),
    ]
    tail = [
        keyword("preset", Annotated[str | None, option(cls, "preset", "--preset")], None),
        keyword("temperature", Annotated[float | None, option(cls, "temperature", "--temperature")], None),
        keyword("top_p", Annotated[float | None, option(cls, "top_p", "--top-p")], None),
        keyword("top_k", Annotated[int | None, option(cls, "top_k", "--top-k")], None),
        keyword("max_tokens", Annotated[int | None, option(cls, "max_new_tokens", "--max-tokens")], None),
        keyword("thinking", Annotated[str | None, option(cls, "thinking", "--thinking")], None),
        keyword("backend", Annotated[str, option(cls, "backend", "--backend")], field_default(cls, "backend")),
        # eval_options entries (EvalConfig settings the experiment passes through; None: EvalConfig's default)
        keyword("base_url", Annotated[str | None, option(EvalConfig, "base_url", "--base-url")], None),
        keyword("device", Annotated[str | None, option(EvalConfig, "device", "--device")], None),
        keyword("dtype", Annotated[str | None, option(EvalConfig, "dtype", "--dtype")], None),
        keyword("seed", Annotated[int, option(cls, "seed", "--seed")], field_default(cls, "seed")),
        keyword("grader", Annotated[str, option(cls, "grader", "--grader")], field_default(cls, "grader")),
        keyword("batch_size", Annotated[int | None, option(cls, "batch_size", "--batch-size")], None),
        keyword("lexicon", Annotated[str, option(cls, "lexicon", "--lexicon", "-l")], field_default(cls, "lexicon")),
    ]
    return add_options(head, tail, into="settings", before=("set_", "report"))


ReportOpt = Annotated[bool, typer.Option("--report/--no-report", help="Write report.html / report.md at the end.")]


def _config_kwargs(settings: dict[str, Any]) -> dict[str, Any]:
    """The shared options as config fields (sampling overrides left unset keep the config's defaults)."""
    s = dict(settings)
    kw = _sampling(*(s.pop(k) for k in ("preset", "temperature", "top_p", "top_k", "max_tokens", "thinking")))
    kw["eval_options"] = _eval_options(*(s.pop(k) for k in ("base_url", "device", "dtype")))
    return {**kw, **s}


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
        help=COMMAND_HELP["experiment"],
        no_args_is_help=True,
    )
    app.add_typer(exp, name="experiment")

    @exp.command("richer-context", context_settings={"help_option_names": ["-h", "--help"]})
    @_eval_settings(RicherContextConfig)
    def richer_context_cmd(
        data: Annotated[str, option(RicherContextConfig, "data", "--data", "-d")],
        n: Annotated[int, option(RicherContextConfig, "n", "--n", min=1)] = 8,
        window: Annotated[str, option(RicherContextConfig, "window", "--window")] = "1-4",
        max_problems: Annotated[int, option(RicherContextConfig, "max_problems", "--max-problems", min=1)] = 100,
        scan_batch: Annotated[int, option(RicherContextConfig, "scan_batch", "--scan-batch", min=1)] = 128,
        contexts: Annotated[list[str] | None, option(RicherContextConfig, "contexts", "--contexts")] = None,
        report: ReportOpt = True,
        *,
        settings: dict[str, Any],
    ) -> None:
        """Section 3: Table 1 (score, length, E, E per 1k tokens with CIs) under four conditioning contexts."""
        from sdlens.experiments.richer_context import run_richer_context

        def config() -> RicherContextConfig:
            kw = _config_kwargs(settings)
            if contexts:
                kw["contexts"] = tuple(_list(contexts))
            return RicherContextConfig(
                data=data, n=n, window=_window(window), max_problems=max_problems, scan_batch=scan_batch, **kw
            )

        _run(config, run_richer_context, _table1, report)

    @exp.command("guided-sft", context_settings={"help_option_names": ["-h", "--help"]})
    @_eval_settings(GuidedSFTConfig)
    def guided_sft_cmd(
        data: Annotated[str | None, option(GuidedSFTConfig, "data", "--data", "-d")] = None,
        from_richer_context: Annotated[
            str | None, option(GuidedSFTConfig, "from_richer_context", "--from-richer-context")
        ] = None,
        benchmarks: Annotated[list[str] | None, option(GuidedSFTConfig, "benchmarks", "--benchmark", "-b")] = None,
        n_eval: Annotated[int, option(GuidedSFTConfig, "n_eval", "--n-eval", min=1)] = 16,
        limit: Annotated[int | None, option(GuidedSFTConfig, "limit", "--limit", min=1)] = None,
        max_examples: Annotated[int, option(GuidedSFTConfig, "max_examples", "--max-examples", min=1)] = 800,
        n: Annotated[int, option(GuidedSFTConfig, "n", "--n", min=1)] = 8,
        window: Annotated[str, option(GuidedSFTConfig, "window", "--window")] = "1-4",
        max_problems: Annotated[int, option(GuidedSFTConfig, "max_problems", "--max-problems", min=1)] = 800,
        trace_max_tokens: Annotated[
            int | None, option(GuidedSFTConfig, "trace_max_new_tokens", "--trace-max-tokens")
        ] = 32768,
        set_: Annotated[list[str] | None, option(GuidedSFTConfig, "train_overrides", "--set", "-s")] = None,
        report: ReportOpt = True,
        *,
        settings: dict[str, Any],
    ) -> None:
        """Section 4: SFT on unguided vs solution-guided correct traces, then Table 2 and hedge counts."""
        options = locals()
        from sdlens.experiments.guided_sft import run_guided_sft

        def config() -> GuidedSFTConfig:
            return config_from(
                GuidedSFTConfig,
                options,
                data=data or "",
                benchmarks=_list(benchmarks) or ["aime24"],
                window=_window(window),
                trace_max_new_tokens=trace_max_tokens,
                train_overrides=_sets(set_),
                **_config_kwargs(settings),
            )

        _run(config, run_guided_sft, _table2, report)

    @exp.command("coverage", context_settings={"help_option_names": ["-h", "--help"]})
    @_eval_settings(CoverageConfig)
    def coverage_cmd(
        coverage: Annotated[list[str] | None, option(CoverageConfig, "coverage", "--coverage")] = None,
        ood: Annotated[list[str] | None, option(CoverageConfig, "ood", "--ood")] = None,
        pool: Annotated[str | None, option(CoverageConfig, "pool", "--pool")] = None,
        in_domain: Annotated[str | None, option(CoverageConfig, "in_domain", "--in-domain")] = None,
        methods: Annotated[list[str] | None, option(CoverageConfig, "methods", "--method", "--methods")] = None,
        method_set: Annotated[list[str] | None, option(CoverageConfig, "method_overrides", "--method-set")] = None,
        eval_every: Annotated[int | None, option(CoverageConfig, "eval_every", "--eval-every", min=1)] = None,
        n_eval: Annotated[int, option(CoverageConfig, "n_eval", "--n-eval", min=1)] = 4,
        reward: Annotated[str | None, option(CoverageConfig, "reward", "--reward")] = None,
        limit: Annotated[int | None, option(CoverageConfig, "limit", "--limit", min=1)] = None,
        set_: Annotated[list[str] | None, option(CoverageConfig, "train_overrides", "--set", "-s")] = None,
        report: ReportOpt = True,
        *,
        settings: dict[str, Any],
    ) -> None:
        """Sections 5-6: SDPO vs GRPO per coverage level, in-domain and OOD curves of accuracy, length and E."""
        lists = {"coverage": coverage, "ood": ood, "methods": methods}  # unset: the config's defaults
        options = {k: v for k, v in locals().items() if k not in lists}
        from sdlens.experiments.coverage import run_coverage

        def config() -> CoverageConfig:
            per_method: dict[str, dict[str, Any]] = {}
            for item in method_set or []:
                name, sep, kv = item.partition(":")
                if not sep:
                    raise InputError(None, f"expected METHOD:key=value, got {item!r}", field="--method-set")
                per_method.setdefault(name, {}).update(_sets([kv], "--method-set"))
            return config_from(
                CoverageConfig,
                options,
                method_overrides=per_method,
                train_overrides=_sets(set_),
                **{name: _list(values) for name, values in lists.items() if values},
                **_config_kwargs(settings),
            )

        _run(config, run_coverage, _coverage_table, report)
