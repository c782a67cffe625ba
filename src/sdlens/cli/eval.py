"""CLI: ``sdlens eval`` (a thin layer over :func:`sdlens.evaluate.run_eval`).

``register(app)`` adds the command to a typer app.
Bad input prints one line ``error: ...`` to stderr and exits with status 2.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from sdlens.cli.commands import COMMAND_HELP
from sdlens.cli.common import fail
from sdlens.cli.options import option
from sdlens.errors import InputError
from sdlens.eval_config import EvalConfig
from sdlens.fields import config_from, field_default

err = Console(stderr=True)


def _opt(name: str, *param_decls: str, **kwargs: Any) -> Any:
    """The option for :class:`EvalConfig`'s field ``name`` (its help is the field's)."""
    return option(EvalConfig, name, *param_decls, **kwargs)


def _default(name: str) -> Any:
    return field_default(EvalConfig, name)


def _fmt(est: dict[str, Any] | None, pct: bool = True) -> str:
    if not est:
        return "-"
    v, ci = est.get("value"), est.get("ci")
    if v is None:
        return "-"
    if pct:
        s = f"{100 * v:.1f}%"
        return s + (f"  [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "")
    return f"{v:.2f}" + (f"  [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")


def summary_table(metrics: dict[str, Any]) -> Table:
    m = metrics["metrics"]
    n = metrics["n"]
    t = Table(
        title=f"{metrics['benchmark']} · {metrics['model']} · {metrics['problems']} problems × n={n}",
        title_justify="left",
    )
    t.add_column("measure")
    t.add_column("value  [95% CI]", justify="right")
    t.add_row(f"avg@{n}", _fmt(m.get("avg@n")))
    for k in sorted(int(key.split("@")[1]) for key in m if key.startswith("pass@")):
        if k != n:
            t.add_row(f"pass@{k}", _fmt(m.get(f"pass@{k}")))
    t.add_row(f"any-correct@{n} (paper's Pass@{n})", _fmt(m.get("any-correct@n")))
    if f"maj@{n}" in m:
        t.add_row(f"maj@{n}", _fmt(m.get(f"maj@{n}")))
    lengths = metrics.get("lengths") or {}
    if "response_tokens" in lengths:
        t.add_row("mean response tokens", f"{lengths['response_tokens']['mean']:,.1f}")
    if "thinking_tokens" in lengths:
        t.add_row("mean thinking tokens", f"{lengths['thinking_tokens']['mean']:,.1f}")
    if "truncated_fraction" in lengths:
        t.add_row("truncated (hit max tokens)", f"{100 * lengths['truncated_fraction']:.1f}%")
    t.add_row("boxed answer", f"{100 * metrics['boxed_fraction']:.1f}%")
    t.add_row("E per response (paper counter)", _fmt(metrics["epistemic"]["E_per_response"], pct=False))
    return t


def quiet_omp() -> None:
    """Let idle OpenMP threads sleep instead of spin (unless the user chose): on a machine busy with other work,
    spinning threads of torch's CPU kernels wait for descheduled peers, and a 2-thread decode ran 5-10x slower than
    1 thread (docs/benchmarks.md). Takes effect only if torch is not imported yet, as in a fresh CLI process."""
    import os

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def register(app: typer.Typer) -> None:
    @app.command("eval", help=COMMAND_HELP["eval"])
    def eval_cmd(
        model: Annotated[str, _opt("model", "--model", "-m")] = _default("model"),
        benchmark: Annotated[str, _opt("benchmark", "--benchmark", "-b")] = _default("benchmark"),
        backend: Annotated[str, _opt("backend", "--backend")] = _default("backend"),
        base_url: Annotated[str | None, _opt("base_url", "--base-url")] = None,
        preset: Annotated[str, _opt("preset", "--preset", "-p")] = _default("preset"),
        n: Annotated[int | None, _opt("n", "--n", min=1)] = None,
        max_tokens: Annotated[int | None, _opt("max_tokens", "--max-tokens", min=1)] = None,
        temperature: Annotated[float | None, _opt("temperature", "--temperature", min=0.0)] = None,
        top_p: Annotated[float | None, _opt("top_p", "--top-p")] = None,
        top_k: Annotated[int | None, _opt("top_k", "--top-k", min=1)] = None,
        thinking: Annotated[str | None, _opt("thinking", "--thinking")] = None,
        seed: Annotated[int, _opt("seed", "--seed")] = _default("seed"),
        limit: Annotated[int | None, _opt("limit", "--limit", min=1)] = None,
        few_shot: Annotated[int, _opt("few_shot", "--few-shot", min=0)] = _default("few_shot"),
        data_dir: Annotated[str | None, _opt("data_dir", "--data-dir")] = None,
        out: Annotated[str | None, _opt("out", "--out", "-o")] = None,
        batch_size: Annotated[int | None, _opt("batch_size", "--batch-size", min=1)] = None,
        device: Annotated[str, _opt("device", "--device")] = _default("device"),
        dtype: Annotated[str, _opt("dtype", "--dtype")] = _default("dtype"),
        threads: Annotated[int | None, _opt("threads", "--threads", min=1)] = None,
        concurrency: Annotated[int, _opt("concurrency", "--concurrency", min=1)] = _default("concurrency"),
        timeout: Annotated[float, _opt("timeout", "--timeout", min=1.0)] = _default("timeout"),
        retries: Annotated[int, _opt("max_retries", "--retries", min=0)] = _default("max_retries"),
        group_n: Annotated[bool, _opt("group_n", "--group-n")] = _default("group_n"),
        tensor_parallel: Annotated[int, _opt("tensor_parallel_size", "--tensor-parallel-size", min=1)] = _default(
            "tensor_parallel_size"
        ),
        save_logprobs: Annotated[bool, _opt("save_logprobs", "--save-logprobs")] = _default("save_logprobs"),
        overwrite: Annotated[bool, _opt("overwrite", "--overwrite")] = _default("overwrite"),
        json_out: Annotated[bool, typer.Option("--json", help="Print metrics.json instead of a table.")] = False,
        no_progress: Annotated[bool, typer.Option("--no-progress", help="No progress bar.")] = False,
        dry_run: Annotated[bool, _opt("dry_run", "--dry-run")] = _default("dry_run"),
    ) -> None:
        options = locals()
        import json

        quiet_omp()

        from rich.markup import escape

        from sdlens.evaluate import run_eval

        cfg = config_from(EvalConfig, options, max_retries=retries, tensor_parallel_size=tensor_parallel)
        try:
            res = run_eval(cfg, console=err, progress=not no_progress)
        except InputError as e:
            fail(e)
        except KeyboardInterrupt:
            err.print("interrupted: rerun the same command to resume")
            raise typer.Exit(130) from None
        if res.plan is not None:
            sys.stdout.write(json.dumps(res.plan) + "\n")
            return
        if json_out:
            sys.stdout.write(json.dumps(res.metrics) + "\n")
            return
        out_console = Console()
        out_console.print(summary_table(res.metrics))
        tps = f", {res.tokens_per_s:,.0f} tok/s" if res.tokens_per_s else ""
        out_console.print(
            f"{res.new_samples} new + {res.resumed_samples} resumed samples in {res.wall_s:.1f} s{tps} -> "
            f"{res.out}/samples.jsonl, metrics.json, manifest.json",
            highlight=False,
            soft_wrap=True,
        )
        for w in res.metrics.get("warnings") or []:
            err.print(f"[yellow]warning:[/yellow] {escape(w)}", highlight=False, soft_wrap=True)

    benchmarks_app = typer.Typer(help=COMMAND_HELP["benchmarks"], no_args_is_help=True)
    app.add_typer(benchmarks_app, name="benchmarks")

    @benchmarks_app.command("list")
    def benchmarks_list(
        json_out: Annotated[
            bool, typer.Option("--json", help="Print a JSON list of objects instead of a table.")
        ] = False,
    ) -> None:
        """Every shipped data set: name, problems, kind (eval / coverage), source, license, sha256."""
        import json

        from sdlens.benchmarks import shipped_sets

        sets = shipped_sets()
        if json_out:
            sys.stdout.write(json.dumps(sets) + "\n")
            return
        # plain lines, not a rich table: the sha256 and source must print whole on a narrow terminal
        typer.echo(f"{'name':<10} {'kind':<8} {'problems':>8} {'distinct':>8}  {'license':<10} source / sha256")
        for e in sets:
            typer.echo(
                f"{e['name']:<10} {e['kind']:<8} {e['n_problems']:>8} {e['n_distinct']:>8}  {e['license']:<10} "
                f"{e['source']}\n{'':<49}{e['sha256']}"
            )
