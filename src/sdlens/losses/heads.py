"""Hidden states instead of logits: the plumbing the chunked SDPO loss needs around a causal LM's output layer.

The chunked loss (:mod:`sdlens.losses.distill`) takes final hidden states ``[B, T, H]`` and the LM head weight
``[V, H]`` instead of ``[B, T, V]`` logits. Here: running a model with its LM head as the identity
(:func:`lm_head_returns_hidden`), the head weight whole on this rank however the model is split (FSDP2 DTensor,
ZeRO-3 partition: :func:`whole_head_weight`), which split that is (:func:`sharding_kind`), and the container the
trainer (:class:`sdlens.train.sdpo_trainer.SdlensSDPOTrainer`) hands its loss (:class:`DistillationHiddenStates`).

Sharded weights. Under FSDP2 the LM head weight is a sharded ``DTensor`` outside the forward unless its unit is still
unsharded (accelerate keeps the output layer's unit unsharded after the forward). The student's is unsharded in place
by its FSDP unit (``FSDPModule.unshard``), so the loss's gradient lands on FSDP's unsharded parameter and FSDP's own
post-backward reduce-scatters it like any other; the teacher's (no gradient) is all-gathered into a temporary copy.
Under DeepSpeed ZeRO-3 the student's loss runs inside the LM head module's forward, so ZeRO-3 gathers the weight for
it and again for its backward, and reduces its gradient, as for any layer; the teacher's weight is gathered into a
copy.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = [
    "DistillationHiddenStates",
    "is_zero3_param",
    "lm_head_returns_hidden",
    "module_forward_replaced",
    "sharding_kind",
    "whole_head_weight",
]


@dataclass
class DistillationHiddenStates:
    """Hidden-state counterpart of TRL's ``DistillationLogits`` (aligned to the completion tokens)."""

    completion_ids: torch.Tensor
    completion_mask: torch.Tensor
    loss_mask: torch.Tensor
    student_hidden: torch.Tensor
    teacher_hidden: torch.Tensor
    student_weight: torch.Tensor
    teacher_weight: torch.Tensor


class _HiddenWithHead(torch.autograd.Function):
    """``x`` unchanged, with the LM head weight as a (gradient-free) input of the node.

    DDP with ``find_unused_parameters`` (transformers' default without gradient checkpointing) walks the graph from
    the forward's outputs and marks every parameter it does not reach as ready at once. The head weight is only used
    by the chunked loss after the forward, so its real gradient would then mark it ready a second time. Linking it
    here makes DDP wait for that gradient instead; no gradient flows through this node to the weight.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, None


def sharding_kind(accelerator) -> str | None:
    """How the trainer's weights are split: ``"fsdp2"``, ``"fsdp1"``, ``"zero3"``, or ``None`` (whole on every
    rank: one process, DDP, ZeRO-1/2)."""
    state = accelerator.state
    plugin = getattr(state, "fsdp_plugin", None)
    if plugin is not None:
        return "fsdp2" if int(getattr(plugin, "fsdp_version", 1) or 1) == 2 else "fsdp1"
    ds = getattr(state, "deepspeed_plugin", None)
    if ds is not None and getattr(ds, "zero_stage", 0) == 3:
        return "zero3"
    return None


def _is_dtensor(t: Any) -> bool:
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # pragma: no cover - torch built without distributed
        return False
    return isinstance(t, DTensor)


def is_zero3_param(t: Any) -> bool:
    """A DeepSpeed ZeRO-3 partitioned parameter (its ``.data`` is empty outside its module's forward)."""
    return hasattr(t, "ds_id") and hasattr(t, "ds_status")


def _fsdp_unit(model: nn.Module, module: nn.Module) -> nn.Module | None:
    """The FSDP2 unit that manages ``module``'s parameters: ``module`` itself or its nearest wrapped ancestor."""
    from torch.distributed.fsdp import FSDPModule

    if isinstance(module, FSDPModule):
        return module
    name = next((n for n, m in model.named_modules() if m is module), None)
    if not name:
        return model if isinstance(model, FSDPModule) else None
    parts = name.split(".")
    for i in range(len(parts) - 1, -1, -1):
        parent = model.get_submodule(".".join(parts[:i]))
        if isinstance(parent, FSDPModule):
            return parent
    return None


def whole_head_weight(model: nn.Module, head: nn.Module, dtype: torch.dtype | None = None) -> torch.Tensor:
    """The output layer's weight ``[V, H]``, whole on this rank, for use after the model's forward.

    An unsharded weight is returned as it is. A trainable FSDP2 weight (the student's, grad enabled) is unsharded in
    place by its FSDP unit and FSDP's unsharded parameter is returned: the loss's gradient into it is reduce-scattered
    by FSDP's post-backward, which also reshards it. A sharded weight without gradient (the teacher's) is
    all-gathered into a new tensor, cast to ``dtype`` first (half the traffic in bf16); likewise a ZeRO-3 one, gathered
    with ``deepspeed.zero.GatheredParameters`` (the student's trainable ZeRO-3 weight is used inside the head's
    forward instead, see ``SdlensSDPOTrainer``). Collective when sharded: every rank must call it.
    """
    weight = head.weight
    if _is_dtensor(weight):
        if torch.is_grad_enabled() and weight.requires_grad:
            unit = _fsdp_unit(model, head)
            if unit is None:
                raise RuntimeError("the LM head weight is a DTensor that no FSDP2 unit manages")
            unit.unshard()
            weight = head.weight
            if _is_dtensor(weight):
                raise RuntimeError("FSDP2 unshard() left the LM head weight sharded")
            return weight
        with torch.no_grad():
            local = weight.detach()
            return (local.to(dtype) if dtype is not None else local).full_tensor()
    if is_zero3_param(weight):
        import deepspeed

        with torch.no_grad(), deepspeed.zero.GatheredParameters([weight], modifier_rank=None):
            return weight.detach().to(dtype or weight.dtype).clone()
    return weight


@contextlib.contextmanager
def module_forward_replaced(module: nn.Module, fn: Any):
    """Within the block ``module(...)`` runs ``fn(...)``; the module's hooks (FSDP, ZeRO-3 gathering) still run."""
    previous = module.__dict__.get("forward")
    module.forward = fn
    try:
        yield module
    finally:
        if previous is None:
            del module.forward
        else:
            module.forward = previous


@contextlib.contextmanager
def lm_head_returns_hidden(head: nn.Module):
    """Within the block, ``head(x)`` returns ``x``: a causal LM's ``.logits`` are then its final hidden states."""

    def _hidden(x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        weight = getattr(head, "weight", None)
        plain = isinstance(weight, torch.Tensor) and not _is_dtensor(weight) and not is_zero3_param(weight)
        if torch.is_grad_enabled() and plain and weight.requires_grad:
            return _HiddenWithHead.apply(x, weight)
        return x

    with module_forward_replaced(head, _hidden):
        yield head
