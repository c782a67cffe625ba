"""CLI: ``sdlens eval`` (a thin layer over :func:`sdlens.evaluate.run_eval`).

``register(app)`` adds the command to a typer app.
Bad input prints one line ``error: ...`` to stderr and exits with status 2.
"""

from __future__ import annotations

import sys
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
    @app.command("eval")
    def eval_cmd(
        model: Annotated[
            str,
            typer.Option(
                "--model", "-m", help="smollm2-135m (embedded), tiny-random, a local model folder, or a hub id."
            ),
        ] = "smollm2-135m",
        benchmark: Annotated[
            str,
            typer.Option(
                "--benchmark",
                "-b",
                help="aime24, aime25, amc23, math500 (shipped: `sdlens benchmarks list`), or a verl parquet / JSONL "
                "file.",
            ),
        ] = "math500",
        backend: Annotated[str, typer.Option("--backend", help="transformers, vllm or openai.")] = "transformers",
        base_url: Annotated[
            str | None,
            typer.Option(
                "--base-url", help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1 (backend openai)."
            ),
        ] = None,
        preset: Annotated[
            str,
            typer.Option(
                "--preset",
                "-p",
                help="paper-think (T 0.6, top-p 0.95, n 16, 38,912 "
                "tokens, thinking on), paper-nothink (T 0.7, top-p 0.8), greedy.",
            ),
        ] = "paper-think",
        n: Annotated[
            int | None, typer.Option("--n", min=1, help="Samples per problem (default: the preset's).")
        ] = None,
        max_tokens: Annotated[
            int | None, typer.Option("--max-tokens", min=1, help="Max new tokens (default: the preset's).")
        ] = None,
        temperature: Annotated[
            float | None, typer.Option("--temperature", min=0.0, help="Default: the preset's.")
        ] = None,
        top_p: Annotated[float | None, typer.Option("--top-p", help="Default: the preset's.")] = None,
        top_k: Annotated[int | None, typer.Option("--top-k", min=1, help="Default: off, as in the paper.")] = None,
        thinking: Annotated[
            str | None,
            typer.Option(
                "--thinking",
                help="enable_thinking for the chat template: on, off, or unset (not passed); default: the preset's.",
            ),
        ] = None,
        seed: Annotated[int, typer.Option("--seed", help="Run seed; each sample's seed derives from it.")] = 0,
        limit: Annotated[int | None, typer.Option("--limit", min=1, help="First L problems only.")] = None,
        few_shot: Annotated[
            int,
            typer.Option(
                "--few-shot",
                min=0,
                help="Worked examples put in the chat before "
                "each problem (0-4; small models need 1 to write \\boxed{}).",
            ),
        ] = 0,
        data_dir: Annotated[
            str | None,
            typer.Option(
                "--data-dir",
                help="Folder with {name}.parquet (default: $SDLENS_DATA_DIR, then the cache; see docs/eval.md).",
            ),
        ] = None,
        out: Annotated[
            str | None, typer.Option("--out", "-o", help="Output folder (default: runs/eval/MODEL-BENCHMARK-PRESET).")
        ] = None,
        batch_size: Annotated[
            int | None,
            typer.Option(
                "--batch-size",
                min=1,
                help="Samples per chunk, and per forward pass for transformers (default: 32; vllm 256; openai "
                "4x concurrency).",
            ),
        ] = None,
        device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda (transformers).")] = "auto",
        dtype: Annotated[
            str, typer.Option("--dtype", help="auto (fp32 on CPU, bf16 on GPU), fp32, bf16, fp16.")
        ] = "auto",
        threads: Annotated[
            int | None,
            typer.Option(
                "--threads",
                min=1,
                help="CPU threads for transformers (default: all cores; 1 is faster on a busy machine).",
            ),
        ] = None,
        concurrency: Annotated[int, typer.Option("--concurrency", min=1, help="Requests in flight (openai).")] = 8,
        timeout: Annotated[float, typer.Option("--timeout", min=1.0, help="Seconds per request (openai).")] = 600.0,
        retries: Annotated[int, typer.Option("--retries", min=0, help="Retries per request (openai).")] = 5,
        group_n: Annotated[
            bool, typer.Option("--group-n", help="One request with n per problem instead of one per sample (openai).")
        ] = False,
        tensor_parallel: Annotated[
            int, typer.Option("--tensor-parallel-size", min=1, help="GPUs per model (vllm).")
        ] = 1,
        save_logprobs: Annotated[
            bool, typer.Option("--save-logprobs", help="Store per-token log-probs in each sample's meta.")
        ] = False,
        overwrite: Annotated[
            bool, typer.Option("--overwrite", help="Replace a run with other settings in --out.")
        ] = False,
        json_out: Annotated[bool, typer.Option("--json", help="Print metrics.json instead of a table.")] = False,
        no_progress: Annotated[bool, typer.Option("--no-progress", help="No progress bar.")] = False,
        dry_run: Annotated[
            bool,
            typer.Option(
                "--dry-run",
                help="Print the plan (data, sampling, what is left to do) as JSON; load no model, write nothing.",
            ),
        ] = False,
    ) -> None:
        """Generate, grade and measure a model on a benchmark; resumable (rerun the same command after a crash)."""
        import json

        quiet_omp()

        from rich.markup import escape

        from sdlens.evaluate import EvalConfig, run_eval

        cfg = EvalConfig(
            model=model,
            benchmark=benchmark,
            backend=backend,
            base_url=base_url,
            preset=preset,
            n=n,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            thinking=thinking,
            seed=seed,
            limit=limit,
            few_shot=few_shot,
            data_dir=data_dir,
            out=out,
            batch_size=batch_size,
            device=device,
            dtype=dtype,
            threads=threads,
            concurrency=concurrency,
            timeout=timeout,
            max_retries=retries,
            group_n=group_n,
            tensor_parallel_size=tensor_parallel,
            save_logprobs=save_logprobs,
            overwrite=overwrite,
            dry_run=dry_run,
        )
        try:
            res = run_eval(cfg, console=err, progress=not no_progress)
        except InputError as e:
            _fail(e)
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

    benchmarks_app = typer.Typer(help="The data sets shipped with sdlens.", no_args_is_help=True)
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
