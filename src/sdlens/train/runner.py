"""The glue: a resolved :class:`TrainConfig` -> TRL's trainer, run, saved, resumable.

Nothing here trains: generation, losses, optimisation, checkpointing and distribution are TRL's and transformers'
(sdlens' ``SdlensSDPOTrainer`` subclass of ``SDPOTrainer``, ``GRPOTrainer``, ``SFTTrainer``). sdlens adds the data,
the reward, the paper's teacher context, the EMA teacher's checkpointing, a rank-agreement check, and the run folder:

    OUT/sdlens_train.yaml      the resolved config (written before training starts)
    OUT/trl_args.json          every TRL / transformers argument as used
    OUT/checkpoint-N/          TRL checkpoints (model, optimizer, RNG, trainer_state.json; EMA teacher for SDPO-EMA)
    OUT/teacher_prompts.jsonl  SDPO: rendered teacher prompts, a few per rollout batch
    OUT/model.safetensors ...  the final model and tokenizer
    OUT/trainer_state.json     HF's trainer state with the log history
    OUT/run_summary.json       steps, world size, whether all ranks ended with the same weights
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdlens.errors import InputError
from sdlens.mitigations.context import ladder_teacher_messages
from sdlens.mitigations.options import SDPOResearchConfig, active_mitigations, needs_state
from sdlens.models import load_tokenizer, resolve_model
from sdlens.runfolder import write_json
from sdlens.train.config import TrainConfig, derive_batches, save_config, trl_config_class, trl_defaults
from sdlens.train.rewards import make_reward
from sdlens.train.sharding import enable_fsdp_on_cpu, load_teacher_state, save_teacher_state
from sdlens.train.teacher import build_teacher_messages, render_prompt

__all__ = [
    "TEACHER_FILE",
    "Prepared",
    "build_trl_kwargs",
    "dry_run",
    "end_process_group",
    "find_checkpoint",
    "prepare",
    "run_train",
]

TEACHER_FILE = "sdlens_teacher.safetensors"
CONFIG_FILE = "sdlens_train.yaml"
_CKPT = re.compile(r"^checkpoint-(\d+)$")


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0") or 0) == 0


def end_process_group() -> None:
    """Destroy a distributed run's process groups once its training is over, as torch asks each trainer process to
    do near its end: left to the interpreter's teardown, gloo's worker threads can abort a finished rank
    ("terminate called without an active exception", which failed tests/test_sharded.py now and then). ``sdlens
    train`` calls it after ``run_train``; a library caller that goes on using the group after training does not."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _say(console, msg: str) -> None:
    if console is not None and is_main_process():
        console.print(msg, highlight=False, soft_wrap=True)


@dataclass
class Prepared:
    cfg: TrainConfig
    model_path: str
    tokenizer: Any
    rows: list[dict[str, Any]]
    dropped: int
    batches: dict[str, Any]
    trl_kwargs: dict[str, Any]
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- preparation


def _chat_kwargs(cfg: TrainConfig) -> dict[str, Any]:
    kw = dict(cfg.trl.get("chat_template_kwargs") or {})
    if cfg.enable_thinking is not None:
        kw.setdefault("enable_thinking", bool(cfg.enable_thinking))
    return kw


def build_trl_kwargs(cfg: TrainConfig, batches: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of the TRL config: ``cfg.trl`` plus what sdlens derives (output dir, precision, model
    dtype, chat template switches, batch fields, EMA sync period, the chunked loss switch, the teacher context)."""
    import torch

    kw = dict(cfg.trl)
    kw["output_dir"] = str(cfg.out) if cfg.out else "sdlens-train-dry-run"
    cuda = torch.cuda.is_available()
    bf16 = fp16 = False
    if cfg.precision == "auto":
        bf16 = bool(cuda and torch.cuda.is_bf16_supported())
    elif cfg.precision == "bf16":
        bf16 = True
    elif cfg.precision == "fp16":
        fp16 = True
    kw.setdefault("bf16", bf16)
    kw.setdefault("fp16", fp16)
    if not cuda:
        kw.setdefault("use_cpu", True)
    mik = dict(kw.get("model_init_kwargs") or {})
    mik.setdefault("dtype", cfg.dtype)
    kw["model_init_kwargs"] = mik
    if cfg.algo != "sft":
        ctk = _chat_kwargs(cfg)
        if ctk:
            kw["chat_template_kwargs"] = ctk
        kw.setdefault("remove_unused_columns", False)
    for k in ("gradient_accumulation_steps", "steps_per_generation"):
        if k in batches:
            kw[k] = batches[k]
    if cfg.algo == "sdpo":
        kw["chunked_distillation"] = cfg.chunked_distillation
        kw["teacher_context"] = cfg.teacher_context
        kw["reprompt_truncation"] = cfg.reprompt_truncation
        kw["log_teacher_prompts"] = cfg.log_teacher_prompts
        if cfg.out and cfg.teacher_context == "sdlens":
            kw.setdefault("teacher_prompts_log", str(Path(cfg.out) / "teacher_prompts.jsonl"))
        if (
            kw.get("teacher_model_kind", "ema") == "ema"
            and cfg.ema_once_per_step
            and "teacher_sync_steps" not in cfg.trl
        ):
            ga = int(kw.get("gradient_accumulation_steps", 1))
            spg = int(kw.get("steps_per_generation") or ga)
            kw["teacher_sync_steps"] = max(1, spg // ga)
    return kw


def prepare(cfg: TrainConfig, *, console=None) -> Prepared:
    """Resolve the model, read and filter the data, derive the batch sizes and the TRL arguments."""
    from sdlens.train.data import filter_overlong_prompts, load_rl_rows, load_sft_rows

    if not cfg.model:
        raise InputError(None, "no model (--model)", field="model")
    if not cfg.data:
        raise InputError(None, "no data (--data)", field="data")
    notes: list[str] = []
    ref = resolve_model(cfg.model)
    side = "left" if cfg.algo != "sft" else None  # prompts are left-padded and left-truncated for generation
    tok = load_tokenizer(ref, padding_side=side, truncation_side=side)
    # how to read the data, for either kind of row
    source = {
        "split": cfg.data_split,
        "config": cfg.data_config,
        "prompt_key": cfg.prompt_key,
        "question_suffix": cfg.question_suffix,
        "max_rows": cfg.max_rows,
    }
    if cfg.algo == "sft":
        rows = load_sft_rows(cfg.data, completion_key=cfg.completion_key, **source)
        if cfg.enable_thinking is not None:
            for r in rows:
                r["chat_template_kwargs"] = {"enable_thinking": bool(cfg.enable_thinking)}
        dropped = 0
    else:
        rows = load_rl_rows(cfg.data, answer_key=cfg.answer_key, prompt_format=cfg.prompt_format, **source)
        rows, dropped = filter_overlong_prompts(rows, tok, cfg.max_prompt_tokens, _chat_kwargs(cfg))
        if dropped:
            notes.append(f"dropped {dropped} rows with prompts over {cfg.max_prompt_tokens} tokens")
        if not rows:
            raise InputError(cfg.data, f"every prompt is longer than max_prompt_tokens={cfg.max_prompt_tokens}")
    batches = derive_batches(cfg, world_size(), len(rows))
    if batches.get("note"):
        notes.append(batches["note"])
    kw = build_trl_kwargs(cfg, batches)
    return Prepared(cfg, ref.path, tok, rows, dropped, batches, kw, notes)


def make_trl_args(p: Prepared):
    return trl_config_class(p.cfg.algo)(**p.trl_kwargs)


# ---------------------------------------------------------------- dry run


def _example_demonstration(student_prompt: str, answer: str | None) -> str:
    body = "[the successful sibling's reasoning]\n</think>\n\n[its answer] \\boxed{" + (answer or "?") + "}"
    return body if student_prompt.rstrip().endswith("<think>") else "<think>\n" + body


def dry_run(cfg: TrainConfig, *, console=None) -> dict[str, Any]:
    """Resolve everything and render one student prompt and (SDPO) one teacher prompt, without training.

    The teacher prompt uses a stand-in demonstration (a sibling rollout does not exist before training), shaped
    like a response of this chat template (pre-opened or not).
    """

    p = prepare(cfg, console=console)
    cfg = p.cfg  # as adjusted for this launch
    args = make_trl_args(p)  # validates the TRL arguments
    row = p.rows[0]
    ctk = p.trl_kwargs.get("chat_template_kwargs") if cfg.algo != "sft" else row.get("chat_template_kwargs")
    student = render_prompt(p.tokenizer, row["prompt"], ctk)
    out: dict[str, Any] = {
        "algo": cfg.algo,
        "preset": cfg.preset,
        "model": p.model_path,
        "rows": len(p.rows),
        "dropped": p.dropped,
        "notes": p.notes,
        "batches": {k: v for k, v in p.batches.items() if k != "note"},
        "trl_changed": _changed(cfg, p.trl_kwargs),
        "student_prompt": student,
    }
    if cfg.algo == "sdpo":
        demo = _example_demonstration(student, row.get("answer"))
        if cfg.teacher_richness is not None:  # the context ladder (sdlens.mitigations.context)
            msgs = ladder_teacher_messages(cfg.teacher_richness, row["prompt"], demo, row.get("answer"), args)
        else:
            msgs = build_teacher_messages(
                row["prompt"],
                demo,
                reprompt_template=args.reprompt_template,
                solution_template=args.solution_template,
                feedback_template=args.feedback_template,
                remove_thinking=bool(args.remove_thinking_from_demonstration),
            )

        out["mitigations"] = active_mitigations(cfg)
        out["example_demonstration"] = demo
        out["teacher_prompt"] = render_prompt(p.tokenizer, msgs, ctk)
    if cfg.algo == "sft":
        out["completion"] = row["completion"][-1]["content"]
    return out


def _changed(cfg: TrainConfig, kw: dict[str, Any]) -> dict[str, Any]:
    defaults = trl_defaults(cfg.algo)
    return {k: v for k, v in sorted(kw.items()) if k not in defaults or defaults[k] != v}


# ---------------------------------------------------------------- checkpoints


def find_checkpoint(out: str | Path, *, need_teacher: bool = False) -> Path | None:
    """The newest complete checkpoint in ``out``: ``trainer_state.json`` (written last by transformers) present,
    and the EMA teacher's weights when ``need_teacher``. A checkpoint cut short by a kill is skipped."""
    out = Path(out)
    if not out.is_dir():
        return None
    found = []
    for d in out.iterdir():
        m = _CKPT.match(d.name)
        if m and d.is_dir():
            found.append((int(m.group(1)), d))
    for _, d in sorted(found, reverse=True):
        if (d / "trainer_state.json").is_file() and (not need_teacher or (d / TEACHER_FILE).is_file()):
            return d
    return None


def check_vllm_server_mode(args) -> None:
    """Refuse vLLM server mode without CUDA before any model is loaded (one line, saying why).

    TRL 1.16 pushes the trained weights to the server through vLLM's NCCL weight-transfer engine: the trainer
    calls ``VLLMClient.init_communicator(device=accelerator.device)`` while it is built, and that method raises
    ``NotImplementedError`` for any device that is not CUDA. Generation through the server would work on a CPU;
    keeping its weights in step with training would not, so no training step can run.
    """
    import torch

    if (
        getattr(args, "use_vllm", False)
        and getattr(args, "vllm_mode", None) == "server"
        and not torch.cuda.is_available()
    ):
        raise InputError(
            None,
            "needs a CUDA device: TRL 1.16 syncs the trained weights into the vLLM server over NCCL "
            "(VLLMClient.init_communicator accepts only CUDA devices); train without --use-vllm on this machine",
            field="vllm_mode",
        )


def _check_teacher_file(path: Path) -> None:
    """Refuse (one line) a resume whose EMA teacher file cannot be read, before any training starts."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            if not list(f.keys()):
                raise ValueError("it holds no tensors")
    except (SafetensorError, OSError, ValueError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InputError(path, f"cannot restore the EMA teacher ({msg}); refusing to resume") from None


def _teacher_callback(resume_dir: Path | None):
    from transformers import TrainerCallback

    class TeacherCheckpointCallback(TrainerCallback):
        """Saves the EMA teacher into each checkpoint and restores it on resume (TRL does neither)."""

        def __init__(self):
            self.trainer = None
            self.resume_dir = resume_dir
            self.restored = False

        def _teacher(self):
            return self.trainer.accelerator.unwrap_model(self.trainer.teacher_model)

        def _sharding(self) -> str | None:
            from sdlens.losses.heads import sharding_kind

            return sharding_kind(self.trainer.accelerator)

        def on_train_begin(self, args, state, control, **kwargs):
            if self.resume_dir is None or self.trainer is None:
                return

            path = self.resume_dir / TEACHER_FILE
            if not path.is_file():  # run_train only resumes from checkpoints that hold the teacher
                raise InputError(path, "the EMA teacher is missing; refusing to resume with a re-initialised teacher")
            try:
                load_teacher_state(self._teacher(), self._sharding(), path, self.trainer.accelerator.device)
            except (RuntimeError, OSError, ValueError) as e:
                msg = str(e).splitlines()[0] if str(e) else type(e).__name__
                raise InputError(path, f"cannot restore the EMA teacher ({msg}); refusing to resume") from None
            self.restored = True

        def on_save(self, args, state, control, **kwargs):
            if self.trainer is None:
                return

            # Sharded: every rank takes part in gathering the teacher (no early return before that), rank 0 writes.
            ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            kind = self._sharding()
            main = state.is_world_process_zero and ckpt.is_dir()
            if kind is None and not main:
                return
            save_teacher_state(self._teacher(), kind, ckpt / TEACHER_FILE, is_main=main)

    return TeacherCheckpointCallback()


# ---------------------------------------------------------------- ranks


def _loss_path(trainer, cfg: TrainConfig) -> dict[str, Any]:
    if cfg.algo != "sdpo":
        return {"distillation_loss_path": None, "distillation_loss_reason": None}
    info = trainer.distillation_loss_path()
    return {"distillation_loss_path": info["path"], "distillation_loss_reason": info["reason"]}


def _save_final_teacher(trainer, folder: Path) -> None:
    """The final EMA teacher as a model folder (config + safetensors); gathered from the shards when sharded."""
    from sdlens.losses.heads import sharding_kind

    acc = trainer.accelerator
    teacher = acc.unwrap_model(trainer.teacher_model)
    kind = sharding_kind(acc)
    if kind is None:
        if acc.is_main_process:
            teacher.save_pretrained(folder)
        return
    if acc.is_main_process:
        folder.mkdir(parents=True, exist_ok=True)
        teacher.config.save_pretrained(folder)
    save_teacher_state(teacher, kind, folder / "model.safetensors", is_main=acc.is_main_process)


def rank_agreement(trainer) -> dict[str, Any]:
    """Fingerprint the weights on every rank (sum and sum of squares in float64, plus the global step) and compare.

    Sharded runs (FSDP, ZeRO-3) hold different shards per rank by design and are not checked.
    """
    import torch

    acc = trainer.accelerator
    plugin = getattr(acc.state, "deepspeed_plugin", None)
    if trainer.is_fsdp_enabled or (plugin is not None and plugin.zero_stage == 3):
        return {"world_size": acc.num_processes, "checked": False, "reason": "sharded weights"}
    model = acc.unwrap_model(trainer.model)
    total = torch.zeros((), dtype=torch.float64)
    squares = torch.zeros((), dtype=torch.float64)
    with torch.no_grad():
        for prm in model.parameters():
            t = prm.detach().to("cpu", torch.float64)
            total += t.sum()
            squares += (t * t).sum()
    fp = torch.tensor([float(trainer.state.global_step), float(total), float(squares)], dtype=torch.float64)
    gathered = acc.gather(fp.to(acc.device).unsqueeze(0)).cpu().reshape(-1, 3)
    agree = bool((gathered == gathered[0]).all())
    return {
        "world_size": acc.num_processes,
        "checked": True,
        "ranks_agree": agree,
        "fingerprints": [[int(r[0]), float(r[1]), float(r[2])] for r in gathered.tolist()],
    }


# ---------------------------------------------------------------- training


def _check_out(out: Path, resume: bool) -> None:
    if resume or not out.is_dir():
        return
    if (out / CONFIG_FILE).exists() or any(_CKPT.match(d.name) for d in out.iterdir()):
        raise InputError(out, "already holds a run; pass --resume to continue it, or choose another --out")


def build_trainer(p: Prepared, args, *, callbacks=()):
    """The trainer for the prepared run: TRL's SFT or GRPO trainer, or sdlens' SDPO trainer."""
    from sdlens.train.data import to_dataset

    cfg = p.cfg
    ds = to_dataset(p.rows)
    if cfg.algo == "sft":
        from trl import SFTTrainer

        return SFTTrainer(
            model=p.model_path, args=args, train_dataset=ds, processing_class=p.tokenizer, callbacks=list(callbacks)
        )
    reward = make_reward(cfg.reward, workers=cfg.reward_workers, timeout=cfg.reward_timeout)
    online = {
        "model": p.model_path,
        "reward_funcs": [reward],
        "args": args,
        "train_dataset": ds,
        "processing_class": p.tokenizer,
        "callbacks": list(callbacks),
    }
    if cfg.algo == "grpo":
        from trl import GRPOTrainer

        return GRPOTrainer(**online)

    from sdlens.train.sdpo_trainer import SdlensSDPOTrainer

    research = SDPOResearchConfig.from_config(cfg) if active_mitigations(cfg) else None
    return SdlensSDPOTrainer(**online, research=research)


def run_train(cfg: TrainConfig, *, console=None, callbacks=(), trainer_hook=None) -> dict[str, Any]:
    """Train as configured; returns the run summary (also written to ``OUT/run_summary.json``).

    ``callbacks``: extra ``transformers.TrainerCallback`` objects. ``trainer_hook(trainer)``: called with the
    trainer before training (tests, custom instrumentation).
    """
    if not cfg.out:
        raise InputError(None, "no output folder (--out)", field="out")
    out = Path(cfg.out)
    _check_out(out, cfg.resume)
    p = prepare(cfg, console=console)
    cfg = p.cfg  # as adjusted for this launch
    for note in p.notes:
        _say(console, f"[yellow]note:[/yellow] {note}")
    args = make_trl_args(p)
    check_vllm_server_mode(args)

    enable_fsdp_on_cpu(str(getattr(args, "mixed_precision", "no") or "no"))  # FSDP launches on CPU-only machines
    ema = cfg.algo == "sdpo" and args.teacher_model_kind == "ema"
    ckpt = find_checkpoint(out, need_teacher=ema) if cfg.resume else None
    if cfg.resume and ckpt is None and ema and find_checkpoint(out) is not None:
        raise InputError(
            find_checkpoint(out),
            f"no checkpoint in {out} holds the EMA teacher ({TEACHER_FILE}); refusing to resume "
            "with a re-initialised teacher",
        )
    if ckpt is not None and ema:
        _check_teacher_file(ckpt / TEACHER_FILE)
    if cfg.resume and ckpt is None:
        _say(console, f"[yellow]note:[/yellow] no complete checkpoint in {out}; starting from the beginning")
    cbs = list(callbacks)
    teacher_cb = _teacher_callback(ckpt) if ema else None
    if teacher_cb is not None:
        cbs.append(teacher_cb)
    trainer = build_trainer(p, args, callbacks=cbs)
    if teacher_cb is not None:
        teacher_cb.trainer = trainer
    mitigation_state = None
    if ckpt is not None and getattr(trainer, "research", None) is not None and needs_state(cfg):
        from sdlens.mitigations.state import restore_state

        mitigation_state = restore_state(trainer, ckpt)
    monitor = None
    if cfg.epistemic_monitor and cfg.algo != "sft":
        from sdlens.monitor import monitor_trainer

        monitor = monitor_trainer(trainer, out_dir=str(out), stop_on_suppression=cfg.stop_on_suppression)
    if trainer_hook is not None:
        trainer_hook(trainer)
    if is_main_process():
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / CONFIG_FILE, extra={"model_path": p.model_path, "rows": len(p.rows)})
        (out / "trl_args.json").write_text(args.to_json_string())
    b = p.batches
    if b:
        _say(
            console,
            f"{cfg.algo}: {b['prompts']} prompts x {args.num_generations} rollouts per rollout batch, "
            f"{cfg.mini_batches_per_step} optimizer step(s) each; gradient_accumulation_steps "
            f"{args.gradient_accumulation_steps}, steps_per_generation {args.steps_per_generation}, world size "
            f"{world_size()}",
        )
    if ckpt is not None:
        _say(console, f"resuming from {ckpt}")
    t0 = time.time()
    result = trainer.train(resume_from_checkpoint=str(ckpt) if ckpt else None)
    trainer.save_model(str(out))
    trainer.save_state()
    if ema:
        _save_final_teacher(trainer, out / "teacher")
    ranks = rank_agreement(trainer) if cfg.check_ranks else {"checked": False, "reason": "check_ranks off"}
    summary = {
        "algo": cfg.algo,
        "preset": cfg.preset,
        "model": cfg.model,
        "model_path": p.model_path,
        "data": cfg.data,
        "rows": len(p.rows),
        "dropped_rows": p.dropped,
        "global_step": int(trainer.state.global_step),
        "train_runtime_s": round(time.time() - t0, 2),
        "training_loss": float(result.training_loss) if result is not None else None,
        "resumed_from": str(ckpt) if ckpt else None,
        "teacher_restored": bool(teacher_cb.restored) if teacher_cb is not None else None,
        "mitigation_state_restored": mitigation_state,  # the GRPO-mix switch / AntiSD gate, as read on resume
        # losses computed by the chunked distillation path on this rank (None: not an SDPO run)
        "chunked_distillation_calls": getattr(trainer, "chunked_calls", None),
        # SDPO: "chunked" (no [B, T, V] logits) or "full_logits" (TRL's loss), and why (docs/distill_loss.md)
        **_loss_path(trainer, cfg),
        "epistemic": monitor.summary() if monitor is not None else None,  # the suppression detector's verdict
        # what the mitigations did (docs/mitigations.md); None: none switched on
        "mitigations": trainer.research_summary() if cfg.algo == "sdpo" else None,
        "out": str(out),
        **ranks,
    }
    if trainer.accelerator.is_main_process:
        write_json(out / "run_summary.json", summary)
    trainer.accelerator.wait_for_everyone()
    return summary
