"""Worker for tests/test_sharded.py (not a test module): run under ``torch.distributed.run`` with 2 gloo processes.

Computes sdlens' chunked distillation loss under FSDP2 on one batch split over the ranks, exactly as
``SdlensSDPOTrainer`` does (LM head as identity, then ``whole_head_weight``), backpropagates, gathers the loss and
the full gradients, and compares them on rank 0 with the same batch in one process (plain models, no sharding).

    python -m torch.distributed.run --nproc_per_node 2 tests/fsdp_loss_worker.py MODEL_DIR OUT.json accelerate,root

Rank 0 writes ``{layout: result}``. Layout ``accelerate``: the student wrapped by accelerate's FSDP2 preparation
(decoder layers, embeddings and the [norm, lm_head] tail in their own units; the tail stays unsharded after the
forward) and the teacher by TRL's ``prepare_fsdp`` (one unit, resharded after the forward: its head weight is a
sharded DTensor at loss time).
Layout ``root``: both wrapped as one unit resharded after the forward, so the student's head weight is sharded at
loss time too and must be unsharded in place for the loss.
"""

from __future__ import annotations

import copy
import json
import os
import sys

import torch
import torch.distributed as dist

PROMPT, COMPLETION = 6, 10


def _batch(world: int, vocab: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    n = 2 * world
    mask = torch.ones(n, COMPLETION)
    mask[1, 6:] = 0  # a short response
    mask[2, :4] = 0  # positions outside the self-distillation mask
    return {
        "prompt": torch.randint(3, vocab, (n, PROMPT), generator=g),
        "teacher_prompt": torch.randint(3, vocab, (n, PROMPT + 3), generator=g),
        "completion": torch.randint(3, vocab, (n, COMPLETION), generator=g),
        "old_logps": -3.0 * torch.rand(n, COMPLETION, generator=g),
        "mask": mask,
    }


def _hidden(model, ids: torch.Tensor) -> torch.Tensor:
    from sdlens.losses.heads import lm_head_returns_hidden

    with lm_head_returns_hidden(model.get_output_embeddings()):
        hidden = model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False).logits
    return hidden[:, :-1, :][:, -COMPLETION:, :]  # TRL's slicing: the positions that predict the completion


def _loss(student, teacher, b: dict[str, torch.Tensor], rows: slice, seen: dict[str, bool]) -> torch.Tensor:
    from torch.distributed.tensor import DTensor

    from sdlens.losses import reduce_per_token, self_distillation_per_token
    from sdlens.losses.heads import whole_head_weight

    hs = _hidden(student, torch.cat([b["prompt"][rows], b["completion"][rows]], dim=1))
    seen.setdefault("student_head_sharded", isinstance(student.get_output_embeddings().weight, DTensor))
    ws = whole_head_weight(student, student.get_output_embeddings())
    with torch.no_grad():
        ht = _hidden(teacher, torch.cat([b["teacher_prompt"][rows], b["completion"][rows]], dim=1))
        seen.setdefault("teacher_head_sharded", isinstance(teacher.get_output_embeddings().weight, DTensor))
        wt = whole_head_weight(teacher, teacher.get_output_embeddings())
    out = self_distillation_per_token(
        hs,
        ws,
        ht,
        wt,
        mask=b["mask"][rows],
        topk=5,
        add_tail=True,
        alpha=0.5,
        target_ids=b["completion"][rows],
        old_logps=b["old_logps"][rows],
        is_clip=2.0,
        chunk_size=7,
    )
    return reduce_per_token(out.per_token_loss, b["mask"][rows], "sequence_mean")


def main(model_dir: str, out_path: str, layouts: str) -> None:
    for key, value in {
        "ACCELERATE_USE_FSDP": "true",
        "FSDP_VERSION": "2",
        "FSDP_AUTO_WRAP_POLICY": "TRANSFORMER_BASED_WRAP",
        "FSDP_RESHARD_AFTER_FORWARD": "true",
        "FSDP_STATE_DICT_TYPE": "FULL_STATE_DICT",
        "FSDP_CPU_RAM_EFFICIENT_LOADING": "false",
    }.items():
        os.environ[key] = value
    from accelerate import Accelerator, PartialState

    from sdlens.train.sharding import enable_fsdp_on_cpu

    PartialState(cpu=True)  # the gloo group, as TrainingArguments(use_cpu=True) starts it
    assert enable_fsdp_on_cpu("no")
    accelerator = Accelerator(cpu=True)
    results = {layout: _one_layout(model_dir, layout, accelerator) for layout in layouts.split(",")}
    if dist.get_rank() == 0:
        with open(out_path, "w") as f:
            json.dump(results, f)
    dist.barrier()
    dist.destroy_process_group()
    # A rank once aborted with "terminate called without an active exception" (a C++ thread destroyed while still
    # joinable, as happens in interpreter teardown); with the result written and the group gone, skip the teardown.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _one_layout(model_dir: str, layout: str, accelerator) -> dict:
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import DTensor
    from transformers import AutoModelForCausalLM
    from trl.models import prepare_fsdp

    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    student = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    teacher = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    with torch.no_grad():  # a teacher unlike the student (same seed, so the same on every rank)
        for p in teacher.parameters():
            p.add_(0.05 * torch.randn_like(p))
    teacher.requires_grad_(False)
    ref_student, ref_teacher = copy.deepcopy(student), copy.deepcopy(teacher)
    b = _batch(world, min(int(student.config.vocab_size), 250))

    if layout == "accelerate":
        # accelerate prepares FSDP2 models together with their optimizer (never stepped here)
        student, _ = accelerator.prepare(student, torch.optim.SGD(student.parameters(), lr=0.0))
        teacher = prepare_fsdp(teacher, accelerator)
    else:
        fully_shard(student, reshard_after_forward=True)
        fully_shard(teacher, reshard_after_forward=True)
    seen: dict[str, bool] = {}
    rows = slice(2 * rank, 2 * rank + 2)
    loss = _loss(student, teacher, b, rows, seen)
    loss.backward()
    losses = [torch.zeros(()) for _ in range(world)]
    dist.all_gather(losses, loss.detach())
    grads = {}
    for name, p in student.named_parameters():
        g = p.grad
        grads[name] = (g.full_tensor() if isinstance(g, DTensor) else g).detach().clone()

    if rank != 0:
        return {}
    ref_loss = _loss(ref_student, ref_teacher, b, slice(0, 2 * world), {})
    ref_loss.backward()
    ref = dict(ref_student.named_parameters())
    diffs = {n: float((grads[n] - ref[n].grad).abs().max()) for n in grads}
    return {
        "world": world,
        "loss_sharded": float(torch.stack(losses).mean()),
        "loss_single": float(ref_loss),
        "max_grad_diff": max(diffs.values()),
        "max_grad": max(float(p.grad.abs().max()) for p in ref.values()),
        "head_grad_diff": diffs["lm_head.weight"],
        "head_grad_norm": float(ref["lm_head.weight"].grad.norm()),
        "params": len(grads),
        "ref_params": len(ref),
        **seen,
    }


if __name__ == "__main__":
    main(*sys.argv[1:4])
