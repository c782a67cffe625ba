"""CLI commands for grading and sampling statistics (`sdlens grade`, `sdlens graders audit`, `sdlens metrics`).

A thin layer over :mod:`sdlens.grading` and :mod:`sdlens.metrics`. Bad input prints one line
``error: FILE:LINE: field 'KEY': ...`` to stderr and exits with status 2.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from sdlens.cli.commands import COMMAND_HELP
from sdlens.cli.common import emit_json, fail, progress_bar
from sdlens.cli.options import option
from sdlens.errors import InputError
from sdlens.fields import config_from, field_default
from sdlens.grading_config import AuditConfig, GradeConfig, MetricsConfig, WorkerSettings

err = Console(stderr=True)

GraderOpt = Annotated[str, option(GradeConfig, "grader", "--grader", "-g")]
WorkersOpt = Annotated[int | None, option(WorkerSettings, "workers", "--workers", "-w", min=1)]
TimeoutOpt = Annotated[int | None, option(GradeConfig, "timeout", "--timeout", "-t", min=1)]
HardTimeoutOpt = Annotated[float | None, option(GradeConfig, "hard_timeout", "--hard-timeout", min=0.1)]
ExtractOpt = Annotated[str | None, option(GradeConfig, "extract", "--extract")]
NoThinkOpt = Annotated[bool, option(GradeConfig, "think_aware", "--no-think-split")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")]


def _grader_options(cfg: GradeConfig) -> dict[str, Any]:
    """The options the user set (not ``None``; ``think_aware`` only when off), checked against what grader
    ``cfg.grader`` accepts."""
    from sdlens.grading import available_graders
    from sdlens.grading.base import _REGISTRY

    name = cfg.grader
    if name not in _REGISTRY:
        raise ValueError(f"unknown grader {name!r}; available: {', '.join(available_graders())}")
    params = inspect.signature(_REGISTRY[name]).parameters
    given = {
        "workers": cfg.workers,
        "timeout": cfg.timeout,
        "hard_timeout": cfg.hard_timeout,
        "extract": cfg.extract,
        "think_aware": None if cfg.think_aware else False,
    }
    options = {}
    for key, value in given.items():
        if value is None:
            continue
        if key not in params:
            flag = "--" + key.replace("_", "-")
            if key == "think_aware":
                flag = "--no-think-split"
            raise ValueError(f"{flag} does not apply to the {name} grader")
        options[key] = value
    return options


def grade(
    file: Annotated[Path, typer.Argument(help="Samples, or any JSONL / Parquet with `response` and `answer`.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output file (.jsonl, or .parquet).")],
    grader: GraderOpt = field_default(GradeConfig, "grader"),
    workers: WorkersOpt = None,
    timeout: TimeoutOpt = None,
    hard_timeout: HardTimeoutOpt = None,
    extract: ExtractOpt = None,
    no_think_split: NoThinkOpt = False,
    json: JsonOpt = False,
) -> None:
    cfg = config_from(GradeConfig, locals(), think_aware=not no_think_split)
    from sdlens.grading import GraderUnavailable, get_grader, grade_file
    from sdlens.grading.files import count_records

    try:
        g = get_grader(cfg.grader, **_grader_options(cfg))
        total = count_records(file)
        with progress_bar(f"grading ({cfg.grader})", "answers") as bar:
            task = bar.add_task("grade", total=total)
            summary = grade_file(file, out, g, progress=lambda k: bar.advance(task, k))
    except (InputError, ValueError, GraderUnavailable) as e:
        fail(e)
    if json:
        emit_json(summary.to_dict())
        return
    acc = f"{summary.n_correct / summary.n:.1%}" if summary.n else "-"
    msg = (
        f"graded {summary.n} answers with {summary.grader}: {summary.n_correct} correct ({acc}), "
        f"{summary.n - summary.n_extracted} without an extracted answer, {summary.n_errors} with a grade_error; "
        f"{summary.answers_per_s:.0f} answers/s -> {out}"
    )
    Console().print(msg, highlight=False, soft_wrap=True)
    for reason, count in summary.errors.items():
        err.print(f"  grade_error {reason}: {count}", highlight=False, soft_wrap=True)


graders_app = typer.Typer(name="graders", help=COMMAND_HELP["graders"], no_args_is_help=True)


@graders_app.command("list")
def graders_list() -> None:
    """The graders available to --grader."""
    from sdlens.grading import available_graders
    from sdlens.grading.base import _REGISTRY

    for name in available_graders():
        doc = (inspect.getdoc(_REGISTRY[name]) or "").split("\n")[0]
        Console().print(f"{name}: {doc}", highlight=False, soft_wrap=True)


@graders_app.command("audit")
def graders_audit(
    file: Annotated[Path, typer.Argument(help="Samples, or any JSONL / Parquet with `response` and `answer`.")],
    grader: Annotated[list[str] | None, option(AuditConfig, "graders", "--grader", "-g")] = None,
    workers: WorkersOpt = None,
    examples: Annotated[int, option(AuditConfig, "max_examples", "--examples", "-n", min=0)] = field_default(
        AuditConfig, "max_examples"
    ),
    no_control: Annotated[bool, option(AuditConfig, "control", "--no-control")] = False,
    json: JsonOpt = False,
) -> None:
    """Every grader on the same samples: agreement, disagreements, and a negative control.

    Prints accuracy per grader, the agreement matrix, the examples they disagree on, and a negative control:
    junk responses must score 0 under every grader (exit status 1 if one does not).

    Example: sdlens graders audit samples.jsonl
    """
    from sdlens.grading import GraderUnavailable, audit_file

    cfg = config_from(
        AuditConfig, locals(), graders=tuple(grader) if grader else None, max_examples=examples, control=not no_control
    )
    try:
        options = {}
        for name in cfg.graders or _all_graders():
            options[name] = _grader_options(GradeConfig(grader=name, workers=cfg.workers))
        report = audit_file(file, cfg.graders, options=options, max_examples=cfg.max_examples, control=cfg.control)
    except (InputError, ValueError, GraderUnavailable) as e:
        fail(e)
    if json:
        emit_json(report.to_dict())
    else:
        _print_audit(report)
    if not report.control_passed:
        raise typer.Exit(1)


def _all_graders() -> list[str]:
    from sdlens.grading import available_graders

    return available_graders()


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _print_audit(report) -> None:
    out = Console()
    t = Table(title=f"Graders on {report.n} samples")
    for col in ("grader", "accuracy %", "extracted %", "grade_error"):
        t.add_column(col, justify="left" if col == "grader" else "right")
    for name in report.graders:
        t.add_row(name, _pct(report.accuracy[name]), _pct(report.extracted[name]), str(report.errors[name]))
    out.print(t)
    m = Table(title="Agreement (% of samples with the same verdict)")
    m.add_column("")
    for name in report.graders:
        m.add_column(name, justify="right")
    for a in report.graders:
        m.add_row(a, *[_pct(report.agreement[a][b]) for b in report.graders])
    out.print(m)
    for p in report.pairs:
        out.print(
            f"{p['a']} vs {p['b']}: agree on {p['agree']}/{report.n}; only {p['a']} correct: {p['only_a']}, "
            f"only {p['b']} correct: {p['only_b']}",
            highlight=False,
        )
    if report.disagreements:
        d = Table(title=f"Disagreements (showing {len(report.disagreements)} of {report.n_disagree})")
        d.add_column("where")
        d.add_column("gold")
        for name in report.graders:
            d.add_column(name)
        for ex in report.disagreements:
            where = f"line {ex.get('line', ex['index'])}" + (f" {ex['problem_id']}" if "problem_id" in ex else "")
            cells = []
            for name in report.graders:
                v = ex["verdicts"][name]
                mark = "correct" if v["correct"] else "wrong"
                cells.append(f"{mark}: {v['extracted']!s:.40}" + (f" ({v['error']:.40})" if v["error"] else ""))
            d.add_row(where, f"{ex['gold']!s:.30}", *cells)
        out.print(d)
    elif report.n:
        out.print("The graders agree on every sample.")
    c = report.control
    if c:
        status = "PASSED" if c["passed"] else "FAILED"
        fps = ", ".join(f"{k}: {v}" for k, v in c["false_positives"].items())
        out.print(
            f"Negative control {status}: {c['n']} junk responses ({c['responses']} kinds x {c['golds']} gold answers)"
            f" scored correct -> {fps}",
            highlight=False,
        )
        for ex in c["examples"]:
            out.print(f"  {ex['grader']} credited {ex['response'][:60]!r} for gold {ex['gold']!r}", highlight=False)


def _parse_ks(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        ks = [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        fail(ValueError(f"--k: expected comma-separated integers like 1,4,16, got {text!r}"))
    if not ks or min(ks) < 1:
        fail(ValueError(f"--k: each k must be >= 1, got {text!r}"))
    return ks


def metrics(
    file: Annotated[Path, typer.Argument(help="Graded samples (JSONL / Parquet with problem_id and correct).")],
    fmt: Annotated[str | None, option(MetricsConfig, "fmt", "--format", "-f")] = None,
    k: Annotated[str | None, option(MetricsConfig, "ks", "--k")] = None,
    resamples: Annotated[int, option(MetricsConfig, "resamples", "--bootstrap", min=0)] = field_default(
        MetricsConfig, "resamples"
    ),
    seed: Annotated[int, option(MetricsConfig, "seed", "--seed")] = field_default(MetricsConfig, "seed"),
    tokenizer: Annotated[str | None, option(MetricsConfig, "tokenizer", "--tokenizer")] = None,
    by: Annotated[str | None, option(MetricsConfig, "by", "--by")] = None,
    json: JsonOpt = False,
) -> None:
    from sdlens.metrics import MetricsError, compute_metrics, compute_metrics_by, load_tokenizer, read_graded_samples

    ks = _parse_ks(k)
    cfg = config_from(MetricsConfig, locals(), ks=tuple(ks) if ks else None)
    try:
        tok = load_tokenizer(cfg.tokenizer) if cfg.tokenizer else None
        samples = list(read_graded_samples(file, cfg.fmt))
        opts = {"resamples": cfg.resamples, "seed": cfg.seed, "tokenizer": tok}
        reports = (
            compute_metrics_by(samples, cfg.by, cfg.ks, **opts)
            if cfg.by
            else [compute_metrics(samples, cfg.ks, **opts)]
        )
    except (InputError, MetricsError) as e:
        fail(e)
    for report in reports:
        for w in report.warnings:
            err.print(f"[yellow]warning:[/yellow] {w}", highlight=False, soft_wrap=True)
    if json:
        docs = [r.to_dict() for r in reports]
        emit_json(docs[0] if not by else {"by": by, "groups": docs})
        return
    for report in reports:
        _print_metrics(report)


def _label(name: str, report) -> str:
    n = str(report.n_min) if report.n_min == report.n_max else "n"
    return name.replace("@n", "@" + n)


def _print_metrics(report) -> None:
    out = Console()
    title = f"{report.n_problems} problems, {report.n_samples} samples"
    title += f", n={report.n_min}" if report.n_min == report.n_max else f", n={report.n_min}..{report.n_max}"
    if report.group:
        title = f"{report.group['field']}={report.group['value']}: " + title
    t = Table(title=title)
    t.add_column("metric")
    t.add_column("%", justify="right")
    t.add_column("95% CI", justify="right")
    for name, est in report.metrics.items():
        ci = "-" if est.lo is None else f"[{100 * est.lo:.1f}, {100 * est.hi:.1f}]"
        t.add_row(_label(name, report), f"{100 * est.value:.1f}", ci)
    out.print(t)
    if len(report.by_source) > 1:
        s = Table(title="By source (% and 95% CI)")
        s.add_column("metric")
        for src, d in report.by_source.items():
            s.add_column(f"{src} ({d['n_problems']})", justify="right")
        for name in report.metrics:
            cells = []
            for d in report.by_source.values():
                est = d["metrics"][name]
                ci = "" if est.lo is None else f" [{100 * est.lo:.1f}, {100 * est.hi:.1f}]"
                cells.append(f"{100 * est.value:.1f}{ci}")
            s.add_row(_label(name, report), *cells)
        out.print(s)
    if report.lengths:
        lt = Table(title=f"Lengths in tokens (from {report.lengths.get('from', '-')})")
        for col in ("", "mean", "median", "max", "mean if correct", "mean if wrong"):
            lt.add_column(col, justify="left" if not col else "right")
        for key in ("response_tokens", "thinking_tokens"):
            st = report.lengths.get(key)
            if st:
                lt.add_row(
                    key.replace("_tokens", ""),
                    f"{st['mean']:.1f}",
                    f"{st['median']:.1f}",
                    str(st["max"]),
                    "-" if st["mean_correct"] is None else f"{st['mean_correct']:.1f}",
                    "-" if st["mean_incorrect"] is None else f"{st['mean_incorrect']:.1f}",
                )
        if lt.row_count:
            out.print(lt)
        if "truncated_fraction" in report.lengths:
            out.print(f"truncated (finish_reason=length): {100 * report.lengths['truncated_fraction']:.1f}%")


def register(app: typer.Typer) -> None:
    """Add the grading commands to the main app."""
    app.command("grade", help=COMMAND_HELP["grade"])(grade)
    app.add_typer(graders_app, name="graders")
    app.command("metrics", help=COMMAND_HELP["metrics"])(metrics)
