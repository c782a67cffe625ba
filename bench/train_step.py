"""One SDPO optimizer step, TRL 1.16's path against sdlens' trainer: peak memory and step time (issue 19).

Both arms are built the way ``sdlens train sdpo --preset sdpo-paper`` builds a run (``resolve_config``, ``prepare``,
``build_trainer``) with the same model, data, teacher prompts (the paper's builder) and seed; only the trainer
differs:

- ``trl``: ``chunked_distillation`` off, i.e. ``trl.experimental.sdpo.SDPOTrainer``'s own compute path (full
  ``[B, T, V]`` student and teacher logits, ``compute_topk_self_distillation_loss``, full-logit rollout log-probs);
- ``sdlens``: the preset as shipped, ``sdlens.train.sdpo_trainer.SdlensSDPOTrainer`` (hidden states, chunked loss).

The paper preset's batch (256 prompts x 8 rollouts) is cut to one prompt x 2 rollouts, one optimizer step of two
micro-batches of one completion (the preset's ``per_device_train_batch_size`` 1). Generation is replaced by fixed
completions of exactly ``T`` tokens (random text ending in ``\\boxed{4}`` and the end token), the same in both arms,
so both rollouts are correct (paper reward 1) and each is distilled against its sibling as the demonstration; the
step is then everything else TRL does: rollout log-probs for the IS clip, rewards, teacher prompts, the student and
teacher forwards, the loss, backward and the AdamW update. The model is a random Qwen2 (hidden 256, 2 layers, tied
embeddings) with the full 151,936-token vocabulary, float32 on CPU.

Each (arm, T) runs in a fresh process. Peak memory: the process's peak RSS (VmHWM, reset just before
``trainer.train()``, when model, teacher and trainer exist) minus the RSS at that point. Step time: from
``on_step_begin`` to ``on_step_end`` of the one optimizer step. ``loss_*`` is the step's logged loss; the two arms
compute the same loss and must agree (``loss_rel_diff``).

    python bench/train_step.py --T 512 1024 2048 4096 --json       # last line: a list of {T, trl_peak_mb, ...}
    python bench/train_step.py --T 512 --arms sdlens                  # one arm
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from distill_memory import _cpu_peak_kb, _reset_cpu_peak, _status_kb  # noqa: E402 - the same RSS probes

VOCAB = 151_936
ANSWER = "4"


def make_model(out: Path, hidden: int) -> None:
    from sdlens.models import make_tiny_model

    make_tiny_model(out, arch="qwen2", vocab_size=VOCAB, hidden_size=hidden, layers=2, seed=0)
    cfg_path = out / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["max_position_embeddings"] = 32_768  # prompt + demonstration + completion of 4,096 tokens each
    cfg_path.write_text(json.dumps(cfg, indent=1))


def completion_ids(tok, T: int, index: int) -> list[int]:
    """``T`` token ids: random lower-case words, then ``\\boxed{4}.`` and the end token (one byte, one token)."""
    rng = random.Random(1000 + index)
    tail = f" so the answer is \\boxed{{{ANSWER}}}."
    n = T - 1 - len(tail)
    words: list[str] = []
    size = 0
    while size < n:
        w = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(1, 9)))
        words.append(w)
        size += len(w) + 1
    text = (" ".join(words) + " ")[:n] + tail
    ids = [*tok.encode(text, add_special_tokens=False), tok.eos_token_id]
    if len(ids) != T:
        raise RuntimeError(f"completion of {len(ids)} tokens, wanted {T}")
    return ids


def worker(args) -> dict:
    import torch
    from transformers import TrainerCallback

    from sdlens.train.config import resolve_config
    from sdlens.train.runner import build_trainer, make_trl_args, prepare

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    T = args.T
    out = Path(args.work) / f"run-{args.arm}-{T}"
    cfg = resolve_config(
        "sdpo",
        preset="sdpo-paper",
        overrides={
            "model": str(Path(args.work) / "model"),
            "data": str(Path(args.work) / "data.jsonl"),
            "out": str(out),
            "prompts_per_step": 1,
            "mini_batches_per_step": 1,
            "chunked_distillation": args.arm == "sdlens",
            "epistemic_monitor": False,
            "check_ranks": False,
            "reward_workers": 1,
        },
        sets=[
            "num_generations=2",
            "max_steps=1",
            f"max_completion_length={T}",
            "warmup_steps=0",
            "save_strategy=no",
            "seed=0",
            "dataloader_num_workers=0",
        ],
    )
    p = prepare(cfg)
    trainer = build_trainer(p, make_trl_args(p))
    tok = p.tokenizer

    def fixed_generate(prompt_ids: list[list[int]]) -> tuple[list[list[int]], list[list[int]]]:
        return prompt_ids, [completion_ids(tok, T, i) for i in range(len(prompt_ids))]

    trainer._generate = fixed_generate  # the same sampled completions in both arms

    marks: dict[str, float] = {}

    class StepClock(TrainerCallback):
        def on_step_begin(self, a, state, control, **kw):
            marks.setdefault("begin", time.perf_counter())

        def on_step_end(self, a, state, control, **kw):
            marks["end"] = time.perf_counter()

    trainer.add_callback(StepClock())
    import gc

    gc.collect()
    method = _reset_cpu_peak()
    base_kb = _status_kb("VmRSS")
    t0 = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - t0
    peak_kb = _cpu_peak_kb(method)
    logs = [h for h in trainer.state.log_history if "loss" in h]
    return {
        "arm": args.arm,
        "T": T,
        "peak_mb": round((peak_kb - base_kb) / 1024, 1),
        "base_mb": round(base_kb / 1024, 1),
        "step_s": round(marks["end"] - marks["begin"], 3),
        "train_s": round(train_s, 3),
        "loss": logs[-1]["loss"] if logs else None,
        # both arms must distill every completion (each has a correct sibling as its demonstration)
        "reprompt_fraction": logs[-1].get("self_distillation/reprompt_sample_fraction") if logs else None,
        "chunked_calls": getattr(trainer, "chunked_calls", None),
        "peak_method": method,
        "threads": args.threads,
    }


def spawn(args, arm: str, T: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", "--arm", arm, "--T", str(T), "--work", args.work]
    cmd += ["--threads", str(args.threads)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TRL_EXPERIMENTAL_SILENCE": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{arm} T={T} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--T", type=int, nargs="+", default=[512, 1024, 2048, 4096], help="completion lengths")
    ap.add_argument("--arms", nargs="+", default=["trl", "sdlens"], choices=["trl", "sdlens"])
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per run (1: steadier on a shared machine)")
    ap.add_argument("--json", action="store_true", help="last line: the list of per-T results")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--arm", default="sdlens", help=argparse.SUPPRESS)
    ap.add_argument("--work", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        args.T = args.T[0]
        print(json.dumps(worker(args)))
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        args.work = tmp
        make_model(Path(tmp) / "model", args.hidden)
        rec = {"prompt": [{"role": "user", "content": "What is 2 + 2?"}], "answer": ANSWER}
        (Path(tmp) / "data.jsonl").write_text(json.dumps(rec) + "\n")
        for T in args.T:
            res = {arm: spawn(args, arm, T) for arm in args.arms}
            row: dict = {"T": T}
            for arm, r in res.items():
                row[f"{arm}_peak_mb"] = r["peak_mb"]
                row[f"{arm}_s"] = r["step_s"]
                row[f"{arm}_loss"] = r["loss"]
            if len(res) == 2:
                a, b = res["trl"], res["sdlens"]
                row["memory_ratio"] = round(a["peak_mb"] / max(b["peak_mb"], 1e-9), 2)
                row["time_ratio"] = round(b["step_s"] / a["step_s"], 3)
                if a["loss"] is not None and b["loss"] is not None:
                    row["loss_rel_diff"] = abs(a["loss"] - b["loss"]) / max(abs(a["loss"]), 1e-12)
            row["chunked_calls"] = res.get("sdlens", {}).get("chunked_calls")
            row["reprompt_fraction"] = {arm: r["reprompt_fraction"] for arm, r in res.items()}
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
