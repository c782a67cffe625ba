"""CLI: ``sdlens train {sdpo,grpo,sft}`` and ``sdlens models tiny`` (thin layers over :mod:`sdlens.train`).

``register(app)`` adds both to a typer app; ``accelerate launch --num_processes N -m sdlens.cli train ...`` runs
the training in N processes.
Bad input prints one line ``error: ...`` to stderr and exits with status 2.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.console import Console

from sdlens.cli.commands import COMMAND_HELP
from sdlens.cli.common import fail
from sdlens.cli.options import option
from sdlens.errors import InputError
from sdlens.mitigations.options import SDPOResearchConfig
from sdlens.train.config import ALGOS, TrainConfig, resolve_config
from sdlens.train.tiny import build_tiny_model

err = Console(stderr=True)

DEFAULT_PRESETS = {"sdpo": "sdpo-paper", "grpo": "grpo-paper", "sft": "sft"}


def _print_section(title: str, text: str) -> None:
    out = Console(soft_wrap=True, highlight=False)
    out.rule(title)
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


def _config_help() -> str:
    from dataclasses import fields

    research = {f.name for f in fields(SDPOResearchConfig)}
    lines = ["sdlens fields (any TRL config field is also accepted, plain or as trl.<field>):"]
    for f in fields(TrainConfig):
        if f.name not in research:
            lines.append(f"  {f.name:<22} {f.metadata['help']}")
    lines.append("SDPO research options (sdlens.mitigations, docs/mitigations.md; off by default):")
    lines.extend(f"  {f.name:<22} {f.metadata['help']}" for f in fields(SDPOResearchConfig))
    return "\n".join(lines)


def _quiet_known_warnings() -> None:
    """TRL 1.16 sets transformers 5's deprecated ``gradient_checkpointing`` names itself: nothing a user can fix."""
    import warnings

    warnings.filterwarnings("ignore", message=r".*gradient_checkpointing.* is deprecated", category=FutureWarning)
    warnings.filterwarnings("ignore", message=r"`gradient_checkpointing` is deprecated", category=FutureWarning)


def single_process_cpu_launch() -> bool:
    """True inside ``accelerate launch --cpu --num_processes N`` (N > 1): accelerate 1.x starts only one process
    there (several CPU processes need its mpirun launcher), recognisable by a rendezvous address without a world."""
    import os

    cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("true", "1", "yes")
    return cpu and bool(os.environ.get("MASTER_ADDR")) and not os.environ.get("WORLD_SIZE")


def _requested_processes() -> int | None:
    """``--num_processes N`` of the ``accelerate launch`` that started this process (its parent), if given there."""
    import os

    try:
        with open(f"/proc/{os.getppid()}/cmdline", "rb") as fh:
            argv = [a.decode(errors="replace") for a in fh.read().split(b"\0") if a]
    except OSError:
        return None
    if not any(a == "launch" or a.endswith(("accelerate", "accelerate.commands.launch")) for a in argv):
        return None
    for i, a in enumerate(argv):
        value = None
        if a in ("--num_processes", "--num-processes") and i + 1 < len(argv):
            value = argv[i + 1]
        elif a.startswith(("--num_processes=", "--num-processes=")):
            value = a.split("=", 1)[1]
        if value is not None:
            try:
                return int(value)
            except ValueError:
                return None
    return None


def relaunch_cpu_processes() -> None:
    """Make ``accelerate launch --cpu --num_processes N -m sdlens.cli train ...`` run N gloo processes.

    accelerate 1.x starts one process there (it has no multi-process CPU launcher but mpirun). When that happens
    and N can be read from the launching command, this process replaces itself with ``torch.distributed.run`` over
    N copies of the same command (same module, same arguments, same rendezvous address). Otherwise it warns.
    """
    import os

    n = _requested_processes()
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if not n or n < 2 or spec is None:
        err.print(
            "[yellow]warning:[/yellow] `accelerate launch --cpu --num_processes N` started ONE process (accelerate "
            "runs several CPU processes only through mpirun). For N gloo processes use `accelerate launch "
            "--multi_gpu --num_processes N ...` or --config_file configs/accelerate/cpu_ddp.yaml: with no GPU, "
            "sdlens trains on the CPU.",
            highlight=False,
        )
        return
    err.print(f"accelerate --cpu started one process: relaunching {n} gloo processes (torch.distributed.run)")
    sys.stderr.flush()
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(n),
        "--master_addr", os.environ.get("MASTER_ADDR", "127.0.0.1"),
        "--master_port", os.environ.get("MASTER_PORT", "29500"),
        "-m", spec.name, *sys.argv[1:],
    ]  # fmt: skip
    os.execv(sys.executable, cmd)


def register(app: typer.Typer) -> None:
    @app.command("train", help=COMMAND_HELP["train"], context_settings={"help_option_names": ["-h", "--help"]})
    def train_cmd(
        algo: Annotated[str, typer.Argument(help="sdpo, grpo or sft.")],
        preset: Annotated[str | None, option(TrainConfig, "preset", "--preset", "-p")] = None,
        model: Annotated[str | None, option(TrainConfig, "model", "--model", "-m")] = None,
        data: Annotated[str | None, option(TrainConfig, "data", "--data", "-d")] = None,
        out: Annotated[str | None, option(TrainConfig, "out", "--out", "-o")] = None,
        max_steps: Annotated[
            int | None,
            typer.Option("--max-steps", min=1, help="Optimizer steps (TRL's max_steps; default: the preset's)."),
        ] = None,
        config: Annotated[str | None, typer.Option("--config", "-c", help="A YAML config file.")] = None,
        set_: Annotated[
            list[str] | None,
            typer.Option("--set", "-s", help="key=value (a sdlens or TRL config field); repeatable."),
        ] = None,
        resume: Annotated[bool, option(TrainConfig, "resume", "--resume")] = False,
        dry_run: Annotated[
            bool, typer.Option("--dry-run", help="Print the resolved setup, one student and one teacher prompt.")
        ] = False,
        use_vllm: Annotated[
            bool | None, typer.Option("--use-vllm/--no-vllm", help="Generate with vLLM (TRL's use_vllm).")
        ] = None,
        vllm_mode: Annotated[
            str | None, typer.Option("--vllm-mode", help="colocate or server (start one with `trl vllm-serve`).")
        ] = None,
        vllm_server_base_url: Annotated[
            str | None, typer.Option("--vllm-server-base-url", help="e.g. http://10.0.0.2:8000 (server mode).")
        ] = None,
        reward: Annotated[str | None, option(TrainConfig, "reward", "--reward")] = None,
        json_out: Annotated[bool, typer.Option("--json", help="Print the result as one JSON object.")] = False,
        epistemic_monitor: Annotated[
            bool | None,
            option(TrainConfig, "epistemic_monitor", "--epistemic-monitor/--no-epistemic-monitor"),
        ] = None,
        stop_on_suppression: Annotated[
            bool, option(TrainConfig, "stop_on_suppression", "--stop-on-suppression")
        ] = False,
        help_config: Annotated[
            bool, typer.Option("--help-config", help="List every sdlens config field and exit.")
        ] = False,
    ) -> None:
        if help_config:
            sys.stdout.write(_config_help() + "\n")
            return
        _quiet_known_warnings()
        if single_process_cpu_launch():
            relaunch_cpu_processes()

        if algo not in ALGOS:
            fail(ValueError(f"algo must be one of {', '.join(ALGOS)}, got {algo!r}"))
        if preset is None and config is None:
            preset = DEFAULT_PRESETS[algo]
        if preset in ("none", ""):
            preset = None
        overrides = {
            "model": model,
            "data": data,
            "out": out,
            "reward": reward,
            "epistemic_monitor": epistemic_monitor,
            "stop_on_suppression": True if stop_on_suppression else None,
            "resume": True if resume else None,
            "trl.max_steps": max_steps,
            "trl.use_vllm": use_vllm,
            "trl.vllm_mode": vllm_mode,
            "trl.vllm_server_base_url": vllm_server_base_url,
        }
        try:
            cfg = resolve_config(algo, preset=preset, config_file=config, overrides=overrides, sets=set_ or [])
            if dry_run:
                from sdlens.train.runner import dry_run as do_dry_run

                res = do_dry_run(cfg, console=err)
            else:
                from sdlens.train.runner import end_process_group, run_train

                res = run_train(cfg, console=err)
                end_process_group()
        except (InputError, ValueError, FileNotFoundError) as e:
            fail(e)
        if json_out:
            sys.stdout.write(json.dumps(res, default=str) + "\n")
            return
        if dry_run:
            head = [f"algo: {res['algo']}   preset: {res['preset']}   model: {res['model']}"]
            head.append(f"rows: {res['rows']} (dropped {res['dropped']})")
            for note in res["notes"]:
                head.append(f"note: {note}")
            if res.get("mitigations"):
                head.append("mitigations: " + ", ".join(res["mitigations"]))
            if res["batches"]:
                head.append("batches: " + ", ".join(f"{k}={v}" for k, v in res["batches"].items()))
            head.append("TRL arguments that differ from TRL's defaults:")
            head += [f"  {k} = {v!r}" for k, v in res["trl_changed"].items()]
            _print_section("setup", "\n".join(head))
            _print_section("student prompt", res["student_prompt"])
            if "teacher_prompt" in res:
                _print_section("teacher prompt (with a stand-in demonstration)", res["teacher_prompt"])
            if "completion" in res:
                _print_section("completion", res["completion"])
            return
        from sdlens.train.runner import is_main_process

        if not is_main_process():
            return
        if res.get("checked") and not res.get("ranks_agree"):
            err.print("[red]warning:[/red] the ranks ended with different weights", highlight=False)
        agree = res.get("ranks_agree") if res.get("checked") else "not checked"
        sys.stdout.write(
            f"done: {res['global_step']} steps in {res['train_runtime_s']} s, world size {res.get('world_size')}, "
            f"ranks agree: {agree}; final model in {res['out']}\n"
        )

    models_app = typer.Typer(help=COMMAND_HELP["models"], no_args_is_help=True)

    @models_app.command("tiny")
    def tiny_cmd(
        out: Annotated[str, typer.Option("--out", "-o", help="Folder to write the model to.")],
        arch: Annotated[str, typer.Option("--arch", help="llama or qwen2.")] = "llama",
        vocab: Annotated[
            int | None,
            typer.Option("--vocab", "--vocab-size", help="Vocabulary rows (default: the byte tokenizer's 261)."),
        ] = None,
        chat_template: Annotated[
            str, typer.Option("--chat-template", help="chatml (Qwen3 style) or preopen (DeepSeek-R1 style <think>).")
        ] = "chatml",
        mean_length: Annotated[
            float,
            typer.Option("--mean-length", help="Calibrate completions to end after about this many tokens; 0: off."),
        ] = 32.0,
        hidden_size: Annotated[int, typer.Option("--hidden-size", min=8)] = 128,
        layers: Annotated[int, typer.Option("--layers", min=1)] = 2,
        seed: Annotated[int, typer.Option("--seed")] = 0,
    ) -> None:
        """Build a tiny random model with a byte-level tokenizer and a chat template (no hub), for smoke runs."""

        try:
            info = build_tiny_model(
                out,
                arch=arch,
                vocab_size=vocab,
                chat_template=chat_template,
                mean_length=mean_length or None,
                hidden_size=hidden_size,
                layers=layers,
                seed=seed,
            )
        except ValueError as e:
            fail(e)
        sys.stdout.write(json.dumps(info) + "\n")

    app.add_typer(models_app, name="models")
