"""`sdlens analyze` without typer, rich or pydantic on its way: the command's options declared once, an argparse
parser generated from them, and the command's body, which the typer command runs too.

A CLI process that counts a 150 MB file spends ~0.1 s counting; typer's parameter handling (pydantic, rich) and
the other commands' modules cost more than that before counting starts. ``main`` (``sdlens.cli``) therefore hands
``sdlens analyze ...`` here first. The argparse parser takes only what typer would read the same way; anything else
(``--help``, ``--``, a bad or unknown option, a value that looks like an option) goes to the typer app, so help,
usage errors and their exit codes come from one place. Both parsers are generated from ``ANALYZE_OPTIONS`` (flags
from here, help and defaults from the config fields), and ``run_analyze`` is the one body behind both.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sdlens.cli.common import emit_json, fail, progress_bar, stderr_console
from sdlens.epistemic.config import AnalyzeConfig, JudgeConfig, MeasureOptions, parse_measures
from sdlens.epistemic.segment import Scope
from sdlens.errors import InputError
from sdlens.fields import config_from, field_default, field_help
from sdlens.io.keys import KeyMap

if TYPE_CHECKING:
    from sdlens.epistemic.scan import PaperScan

__all__ = [
    "ANALYZE_OPTIONS",
    "FILES_HELP",
    "OPTIONS",
    "NotForFastPath",
    "OptionSpec",
    "analyze_config",
    "analyze_parser",
    "end_process",
    "parse_analyze",
    "run_analyze",
    "try_run",
]

FILES_HELP = "Trace files or folders (verl dumps, TRL completions)."
FROM_FIELD: Any = object()  # an option's default: its config field's


@dataclass(frozen=True)
class OptionSpec:
    """One command-line option: its flags, and the config field whose ``help`` (and default) it takes."""

    name: str
    """The command's parameter (and argparse dest)."""
    flags: tuple[str, ...]
    owner: type | None = None
    """The config dataclass whose field documents the option; ``None`` for an output switch (``help`` then)."""
    field: str = ""
    kind: type = str
    """str, float, Path, an Enum (its values are the choices) or bool (a flag)."""
    default: Any = FROM_FIELD
    """Where the command's default is not the field's (``None``: not given)."""
    help: str = ""

    def help_text(self) -> str:
        return field_help(self.owner, self.field) if self.owner is not None else self.help

    def default_value(self) -> Any:
        if self.default is not FROM_FIELD or self.owner is None:
            return None if self.default is FROM_FIELD else self.default
        return field_default(self.owner, self.field)


def _opt(name: str, *flags: str, owner: type, field: str = "", kind: type = str, default: Any = FROM_FIELD):
    return OptionSpec(name, flags, owner, field or name, kind, default)


# In the order `sdlens analyze --help` lists them; `sdlens compare` (cli/analyze.py) takes those it shares from here.
ANALYZE_OPTIONS: tuple[OptionSpec, ...] = (
    _opt("fmt", "--format", "-f", owner=AnalyzeConfig),
    _opt("lexicon", "--lexicon", "-l", owner=AnalyzeConfig),
    _opt("scope", "--scope", owner=AnalyzeConfig, kind=Scope),
    _opt("by", "--by", owner=AnalyzeConfig),
    _opt("tokenizer", "--tokenizer", owner=AnalyzeConfig),
    _opt("text_key", "--text-key", owner=KeyMap),
    _opt("id_key", "--id-key", owner=KeyMap),
    _opt("group_key", "--group-key", owner=KeyMap),
    _opt("correct_key", "--correct-key", owner=KeyMap),
    _opt("skip_bad", "--skip-bad", owner=AnalyzeConfig, kind=bool),
    _opt("measures", "--measures", owner=AnalyzeConfig, default=None),
    _opt("reflection_lexicon", "--reflection-lexicon", owner=MeasureOptions),
    _opt("fork_entropy", "--fork-entropy", owner=MeasureOptions, kind=float),
    _opt("judge_model", "--judge-model", owner=JudgeConfig, field="model", default=None),
    _opt("judge_backend", "--judge-backend", owner=JudgeConfig, field="backend"),
    _opt("judge_base_url", "--judge-base-url", owner=JudgeConfig, field="base_url"),
    _opt("judge_cache", "--judge-cache", owner=JudgeConfig, field="cache", kind=Path),
    OptionSpec("json", ("--json",), kind=bool, default=False, help="Print one JSON object instead of tables."),
)
OPTIONS = {o.name: o for o in ANALYZE_OPTIONS}


class NotForFastPath(Exception):
    """The argparse parser does not take these arguments the way typer would: the typer app handles them."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse would print its own usage and exit
        raise NotForFastPath(message)


def analyze_parser() -> argparse.ArgumentParser:
    """``sdlens analyze``'s options as an argparse parser (no help: ``--help`` is typer's)."""
    parser = _Parser(prog="sdlens analyze", add_help=False, allow_abbrev=False)
    parser.add_argument("files", nargs="+", type=Path, help=FILES_HELP)
    for o in ANALYZE_OPTIONS:
        if o.kind is bool:
            parser.add_argument(*o.flags, dest=o.name, action="store_true", help=o.help_text())
            continue
        choices = list(o.kind) if issubclass(o.kind, Enum) else None
        parser.add_argument(
            *o.flags, dest=o.name, type=o.kind, choices=choices, default=o.default_value(), help=o.help_text()
        )
    return parser


def parse_analyze(args: Sequence[str]) -> dict[str, Any]:
    """The values ``sdlens analyze ARGS`` gives the command, or ``NotForFastPath`` where typer must decide: help,
    ``--`` and every usage error (so they read and exit as typer's)."""
    if "--help" in args or "--" in args:
        raise NotForFastPath("typer's help or typer's reading of --")
    values = vars(analyze_parser().parse_args(list(args)))
    if any(str(f).startswith("-") for f in values["files"]):
        raise NotForFastPath("argparse reads -1 as a file; click, as an unknown option")
    return values


def try_run(argv: Sequence[str], early_scan: PaperScan | None = None) -> bool:
    """Run ``sdlens ARGV`` here when it is an ``analyze`` the argparse parser takes; ``False`` otherwise.
    ``early_scan``: the first file's scan, started before the arguments were parsed (``sdlens.cli.main``)."""
    if not argv or argv[0] != "analyze":
        return False
    try:
        values = parse_analyze(argv[1:])
    except NotForFastPath:
        return False
    try:
        run_analyze(**values, early_scan=early_scan)
    except KeyboardInterrupt:
        raise SystemExit(130) from None  # as typer's app ends on Ctrl-C: silently, status 130
    except BrokenPipeError:
        # the reader went away (`| head`): as typer's app, status 1 and no traceback (nor one at exit's flush)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(1) from None
    return True


def end_process(status: int = 0) -> None:
    """End the process now that a command's output is written, without the interpreter's teardown: freeing numpy's
    and the analyzer's modules costs ~12 ms here, a tenth of counting a 150 MB file (docs/benchmarks.md). Only where
    nothing with exit handlers of its own was loaded (torch, transformers: a tokenizer or a judge); otherwise it
    returns and the process exits as usual."""
    if any(m in sys.modules for m in ("torch", "transformers", "multiprocessing")):
        return
    try:
        sys.stdout.flush()
    except BrokenPipeError:  # the reader went away (`| head`): as try_run does, status 1
        status = 1
    with contextlib.suppress(BrokenPipeError, ValueError):  # a closed stderr has nothing of ours to flush
        sys.stderr.flush()
    os._exit(status)


def _import_numpy_with_one_blas_thread() -> None:
    """Import numpy with its BLAS (OpenBLAS) limited to one thread, unless the user chose a number. At import
    OpenBLAS starts a thread per core, ~45 ms on a busy 2-core machine (docs/benchmarks.md), and counting does no
    linear algebra. The setting is undone after the import, so processes started later (a judge model, a
    tokenizer) do not inherit it."""
    if "numpy" in sys.modules or "OPENBLAS_NUM_THREADS" in os.environ:
        return
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    try:
        import numpy  # noqa: F401
    finally:
        del os.environ["OPENBLAS_NUM_THREADS"]


def analyze_config(options: dict[str, Any]) -> AnalyzeConfig:
    """The ``AnalyzeConfig`` of ``sdlens analyze``'s or ``sdlens compare``'s option values, by parameter name (``by``
    and ``group_key`` are analyze's alone; the values only the command reads, such as ``json``, are not looked at)."""
    judge = None
    if options["judge_model"] is not None:
        from sdlens.behaviour.judge import Judged

        judge = Judged(
            JudgeConfig(
                model=options["judge_model"],
                backend=options["judge_backend"],
                base_url=options["judge_base_url"],
                cache=options["judge_cache"],
            )
        )
    return config_from(
        AnalyzeConfig,
        options,
        keys=config_from(KeyMap, options),
        measures=parse_measures(options["measures"]),
        measure_options=config_from(MeasureOptions, options, judged=judge),
    )


def _stderr_may_be_terminal() -> bool:
    """``False`` only where rich's console would find stderr no terminal (so its progress bar would be off): then
    rich need not be imported."""
    env = os.environ
    if "TTY_COMPATIBLE" in env or "FORCE_COLOR" in env or "IPython" in sys.modules:
        return True
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # no stderr, or a closed one: rich finds no terminal either
        return False


def run_analyze(
    files: list[Path],
    *,
    fmt: str | None,
    lexicon: str,
    scope: Scope,
    by: str | None,
    tokenizer: str | None,
    text_key: str | None,
    id_key: str | None,
    group_key: str | None,
    correct_key: str | None,
    skip_bad: bool,
    measures: str | None,
    reflection_lexicon: str,
    fork_entropy: float,
    judge_model: str | None,
    judge_backend: str,
    judge_base_url: str | None,
    judge_cache: Path,
    json: bool,
    early_scan: PaperScan | None = None,
) -> None:
    """The body of ``sdlens analyze`` (typer's command and the argparse path both run it). ``early_scan``: a scan
    of the first file started before the options were read; taken over where it scans what the options ask."""
    options = locals()
    from sdlens.epistemic.scan import start_first_scan

    try:
        config = analyze_config(options)
        # The first file's scan starts before numpy and the analyzer load, so they import on one core while the
        # scanner (no GIL) counts on the other (docs/benchmarks.md).
        first_scan = start_first_scan(files, config, started=early_scan)
    except InputError as e:
        fail(e)
    if tokenizer is None and judge_model is None:
        _import_numpy_with_one_blas_thread()
    from sdlens.epistemic.analyze import run_analysis

    try:
        if _stderr_may_be_terminal():
            run = _with_progress_bar(files, config, first_scan)
        else:
            run = run_analysis(files, config, first_scan=first_scan)
        res = run.result()
    except InputError as e:
        fail(e)
    if json:
        emit_json(res)
        return
    from rich.console import Console

    from sdlens.report.tables import analysis_tables

    Console().print(analysis_tables(res))
    if res.get("skipped_records"):
        stderr_console().print(f"skipped {res['skipped_records']} bad record(s); first: {res['skipped_examples'][0]}")


def _with_progress_bar(files: list[Path], config: AnalyzeConfig, first_scan: Any) -> Any:
    from sdlens.epistemic.analyze import run_analysis

    with progress_bar("counting", "responses") as bar:
        task = bar.add_task("count", total=None)
        return run_analysis(files, config, progress=lambda n: bar.advance(task, n), first_scan=first_scan)
