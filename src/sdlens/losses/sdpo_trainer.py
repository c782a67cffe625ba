"""TRL's SDPO trainer with the memory-lean distillation loss (issue 6, docs/distill_loss.md).

``ChunkedSDPOTrainer`` subclasses ``trl.experimental.sdpo.SDPOTrainer`` (TRL 1.16) and overrides three methods, the
narrowest points where TRL materialises full ``[B, T, V]`` logits:

- ``_compute_teacher_student_logits``: forwards student and teacher with the LM head temporarily replaced by the
  identity, so the models return their final hidden states ``[B, T, H]`` (sliced exactly like TRL's
  ``_forward_logits``) and the LM head weights; it returns a :class:`DistillationHiddenStates` instead of TRL's
  ``DistillationLogits``.
- ``_compute_self_distillation_loss``: given hidden states, computes the loss with
  :func:`sdlens.losses.self_distillation_per_token` (chunked, recomputation in backward), with TRL's IS clip
  (``distillation_is_clip`` against ``old_per_token_logps``), loss mask, per-sequence token mean and metrics.
- ``_compute_rollout_logps``: the rollout-time log-probs (only computed when TRL would) from hidden states in chunks.

Everything else (generation, rewards, teacher prompts, teacher EMA, ``compute_loss``) is TRL's. The chunked path is
used when ``chunked_distillation`` is on (default), ``distillation_weight == 1.0`` (the paper; a blend with the policy
loss needs the student's full logits), no teacher server, ``distillation_mode`` in {``topk_logits``, ``full_logits``},
the model is not FSDP1-wrapped (flat parameters), its output layer is a plain bias-free ``nn.Linear``, and a one-time
check on 16 tokens confirms ``hidden @ W^T`` reproduces the model's logits (catches logit soft-capping or scaling).
Otherwise it falls back to TRL's path and says why once. Which path the losses took, and why:
:meth:`ChunkedSDPOTrainer.distillation_loss_path` (``run_summary.json``'s ``distillation_loss_path``).

Sharded weights (issue 18). Under FSDP2 the LM head weight is a sharded ``DTensor`` outside the forward unless its
unit is still unsharded (accelerate keeps the output layer's unit unsharded after the forward). The student's is
unsharded in place by its FSDP unit (``FSDPModule.unshard``), so the loss's gradient lands on FSDP's unsharded
parameter and FSDP's own post-backward reduce-scatters it like any other; the teacher's (no gradient) is
all-gathered into a temporary copy. Under DeepSpeed ZeRO-3 the student's loss runs inside the LM head module's
forward, so ZeRO-3 gathers the weight for it and again for its backward, and reduces its gradient, as for any
layer; the teacher's weight is gathered into a copy.

Turn it off with ``ChunkedSDPOConfig(chunked_distillation=False)`` or ``ChunkedSDPOTrainer(..., chunked=False)``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

from trl.experimental.sdpo import SDPOConfig, SDPOTrainer

from sdlens.losses.distill import reduce_per_token, self_distillation_per_token, token_logprobs

__all__ = [
    "PAPER_SDPO_LOSS",
    "ChunkedSDPOConfig",
    "ChunkedSDPOTrainer",
    "DistillationHiddenStates",
    "lm_head_returns_hidden",
    "module_forward_replaced",
    "sharding_kind",
    "whole_head_weight",
]

logger = logging.getLogger(__name__)

# The paper's distillation loss (docs/paper.md 6.3 / 13.5) as ChunkedSDPOConfig keyword arguments, chunked path on.
PAPER_SDPO_LOSS: dict[str, Any] = {
    "distillation_mode": "topk_logits",
    "distillation_topk": 100,
    "distillation_add_tail": True,
    "distillation_alpha": 0.5,
    "distillation_is_clip": 2.0,
    "distillation_weight": 1.0,
    "chunked_distillation": True,
}

# Config attributes of models whose logits are not just `lm_head(hidden)`.
_LOGIT_POSTPROCESSING_ATTRS = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier_scale")


@dataclass
class ChunkedSDPOConfig(SDPOConfig):
    """``SDPOConfig`` plus the switches of the chunked distillation loss."""

    chunked_distillation: bool = field(
        default=True,
        metadata={"help": "Compute the distillation loss from hidden states in chunks (no full [B, T, V] logits)."},
    )
    distillation_chunk_size: int | None = field(
        default=None,
        metadata={"help": "Tokens per chunk for the chunked loss; default ~2**26 logits per chunk."},
    )
    chunked_rollout_logps: bool = field(
        default=True,
        metadata={"help": "Also compute rollout-time log-probs (IS clip) from hidden states in chunks."},
    )


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


@dataclass
class DistillationPass:
    """What listeners see of one distillation loss: per completion token, ``[B, T]``, all detached.

    ``student_logps`` / ``teacher_logps`` are the log-probs of the sampled token ``completion_ids`` under the student
    and under the (solution-conditioned) teacher; ``per_token_loss`` is the weighted, masked distillation loss.
    """

    completion_ids: torch.Tensor
    loss_mask: torch.Tensor
    student_logps: torch.Tensor
    teacher_logps: torch.Tensor
    per_token_loss: torch.Tensor
    step: int


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


def _is_zero3_param(t: Any) -> bool:
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
    forward instead, see ``ChunkedSDPOTrainer``). Collective when sharded: every rank must call it.
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
    if _is_zero3_param(weight):
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
        plain = isinstance(weight, torch.Tensor) and not _is_dtensor(weight) and not _is_zero3_param(weight)
        if torch.is_grad_enabled() and plain and weight.requires_grad:
            return _HiddenWithHead.apply(x, weight)
        return x

    with module_forward_replaced(head, _hidden):
        yield head


class ChunkedSDPOTrainer(SDPOTrainer):
    """``SDPOTrainer`` whose distillation loss never materialises full logits (see the module docstring).

    Args (beyond ``SDPOTrainer``'s):
        chunked: overrides ``args.chunked_distillation`` (default on).
        distillation_chunk_size: overrides ``args.distillation_chunk_size``.
    """

    def __init__(self, *args: Any, chunked: bool | None = None, distillation_chunk_size: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        cfg = self.args
        self.chunked_distillation = bool(getattr(cfg, "chunked_distillation", True) if chunked is None else chunked)
        self.distillation_chunk_size = distillation_chunk_size or getattr(cfg, "distillation_chunk_size", None)
        self.chunked_rollout_logps = bool(getattr(cfg, "chunked_rollout_logps", True))
        self._head_ok: dict[int, bool] = {}
        self._fallback_reported: set[str] = set()
        self.chunked_calls = 0  # how many losses went through the chunked path (tests, diagnostics)
        # teacher/student passes per path ("chunked" / "full_logits") and why the full-logit ones were taken
        self.loss_path_counts: dict[str, int] = {"chunked": 0, "full_logits": 0}
        self.full_logit_reasons: list[str] = []
        # Callables receiving a DistillationPass after every chunked distillation loss (telemetry, see sdlens.monitor).
        self.distillation_listeners: list[Any] = []

    # ---- extension points -------------------------------------------------------------------------------------------

    def distillation_token_weights(self, completion_ids: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor | None:
        """Per-token weights ``[B, T]`` multiplied (detached) into the distillation loss; ``None``: all ones.

        Subclasses override it to re-weight positions by token class (mitigations such as hedge-aware distillation).
        """
        return None

    def transform_per_token_loss(
        self, per_token_loss: torch.Tensor, completion_ids: torch.Tensor, loss_mask: torch.Tensor
    ) -> torch.Tensor:
        """The masked, weighted per-token loss ``[B, T]`` before its mean; subclasses may reshape it (per-class
        clipping). Default: unchanged."""
        return per_token_loss

    def _notify_distillation_listeners(
        self, d: DistillationHiddenStates, per_token_loss: torch.Tensor, student_logps: torch.Tensor
    ) -> None:
        """Hand each listener the sampled tokens' student and teacher log-probs and the per-token loss (no grad)."""
        with torch.no_grad():
            mm = self._matmul_dtype()
            kw = {"temperature": self.temperature, "chunk_size": self.distillation_chunk_size, "matmul_dtype": mm}
            event = DistillationPass(
                completion_ids=d.completion_ids,
                loss_mask=d.loss_mask,
                student_logps=student_logps,
                teacher_logps=token_logprobs(d.teacher_hidden, d.teacher_weight, d.completion_ids, **kw),
                per_token_loss=per_token_loss.detach(),
                step=int(self.state.global_step),
            )
        for listener in self.distillation_listeners:
            listener(event)

    @torch.no_grad()
    def _notify_listeners_from_logits(self, inputs, d) -> None:
        """The listeners on TRL's full-logit path (a fallback): the same fields, from its temperature-scaled
        ``[B, T, V]`` logits and its own per-token loss functions (recomputed without gradient)."""
        from trl.experimental.sdpo import loss_utils as lu
        from trl.trainer.utils import selective_log_softmax

        a = self.args
        student, teacher = d.student_logits.detach(), d.teacher_logits.detach()
        if a.distillation_mode == "topk_logits":
            per_token = lu.compute_topk_self_distillation_loss(
                student,
                teacher,
                distillation_topk=a.distillation_topk,
                distillation_alpha=a.distillation_alpha,
                distillation_add_tail=a.distillation_add_tail,
            )
        elif a.distillation_mode == "full_logits":
            per_token = lu.compute_full_logit_self_distillation_loss(
                student, teacher, distillation_alpha=a.distillation_alpha
            )
        else:
            per_token = lu.compute_sampled_token_self_distillation_loss(
                student, teacher, d.completion_ids, distillation_alpha=a.distillation_alpha
            )
        student_logps = selective_log_softmax(student, d.completion_ids)
        old_logps = inputs.get("old_per_token_logps")
        if a.distillation_is_clip is not None and old_logps is not None:
            clip = a.distillation_is_clip
            per_token = lu.apply_importance_sampling_clipping(per_token, student_logps, old_logps, clip)
        event = DistillationPass(
            completion_ids=d.completion_ids,
            loss_mask=d.loss_mask,
            student_logps=student_logps,
            teacher_logps=selective_log_softmax(teacher, d.completion_ids),
            per_token_loss=per_token * d.loss_mask,
            step=int(self.state.global_step),
        )
        for listener in self.distillation_listeners:
            listener(event)

    # ---- which path, and why ----------------------------------------------------------------------------------------

    def distillation_loss_path(self) -> dict[str, Any]:
        """Which path this rank's distillation losses took: ``{"path", "reason", "passes"}``.

        ``path`` is ``chunked`` (hidden states x LM head in chunks, no ``[B, T, V]`` logits), ``full_logits`` (TRL's
        path), ``mixed`` (both, e.g. a switch between steps) or ``None`` (no distillation pass yet).
        """
        counts = dict(self.loss_path_counts)
        chunked, full = counts["chunked"], counts["full_logits"]
        path = {(True, False): "chunked", (False, True): "full_logits", (True, True): "mixed"}.get(
            (chunked > 0, full > 0)
        )
        head = {
            None: "the LM head weight is whole on every rank",
            "fsdp2": "the FSDP2-sharded LM head weight is gathered for the loss (student: unsharded in place by its "
            "FSDP unit, gradient reduce-scattered by FSDP; teacher: an all-gathered copy)",
            "zero3": "the ZeRO-3-partitioned LM head weight is gathered by running the loss inside the head's forward "
            "(teacher: a gathered copy)",
        }.get(sharding_kind(self.accelerator), "")
        why = []
        if chunked:
            why.append(f"chunked loss from hidden states; {head}")
        if full:
            why.append("TRL's full-logit loss because " + "; ".join(dict.fromkeys(self.full_logit_reasons)))
        reason = " / ".join(why) if why else ("chunked_distillation is off" if not self.chunked_distillation else None)
        return {"path": path, "reason": reason, "passes": counts}

    # ---- eligibility ------------------------------------------------------------------------------------------------

    def _output_head(self, model) -> nn.Module | None:
        unwrapped = self.accelerator.unwrap_model(model)
        getter = getattr(unwrapped, "get_output_embeddings", None)
        return getter() if callable(getter) else None

    def _model_blocker(self, model, inputs: dict[str, torch.Tensor] | None) -> str | None:
        """Why hidden states + LM head cannot replace this model's logits (``None``: they can)."""
        if sharding_kind(self.accelerator) == "fsdp1":
            return "FSDP1 flattens the LM head weight into its unit's flat parameter (use fsdp_version: 2)"
        head = self._output_head(model)
        # nn.Linear itself, or FSDP2's FSDPLinear (the same class with FSDP's hooks): nn.Linear's own forward
        plain_linear = isinstance(head, nn.Linear) and type(head).forward is nn.Linear.forward
        if not plain_linear or head.bias is not None or not head.weight.is_floating_point():
            return f"the output layer is {type(head).__name__}, not a bias-free nn.Linear"
        config = getattr(self.accelerator.unwrap_model(model), "config", None)
        text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
        for attr in _LOGIT_POSTPROCESSING_ATTRS:
            value = getattr(text_config, attr, None)
            if value not in (None, 0, 0.0, 1, 1.0):
                return f"the model post-processes its logits ({attr}={value})"
        key = id(self.accelerator.unwrap_model(model))
        if key not in self._head_ok and inputs is not None:
            self._head_ok[key] = self._check_head(model, inputs)
        if not self._head_ok.get(key, True):
            return "hidden_states @ lm_head.weight.T does not reproduce the model's logits"
        return None

    def _loss_blocker(self, model, inputs) -> str | None:
        if not self.chunked_distillation:
            return "chunked_distillation is off"
        if self.use_teacher_server:
            return "the teacher server path has no local teacher logits"
        if self.args.distillation_weight != 1.0:
            return "distillation_weight != 1.0 needs the student's full logits for the policy loss"
        if self.args.distillation_mode not in ("topk_logits", "full_logits"):
            return f"distillation_mode={self.args.distillation_mode!r} is not chunked"
        return self._model_blocker(model, inputs)

    def _report_fallback(self, reason: str) -> None:
        if reason not in self._fallback_reported and reason != "chunked_distillation is off":
            self._fallback_reported.add(reason)
            logger.warning("ChunkedSDPOTrainer: using TRL's full-logit path because %s.", reason)

    def _matmul_dtype(self) -> torch.dtype | None:
        """The LM head matmul dtype TRL's path gets from accelerate's autocast (bf16 / fp16 mixed precision)."""
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(str(self.accelerator.mixed_precision))

    @torch.no_grad()
    def _check_head(self, model, inputs: dict[str, torch.Tensor]) -> bool:
        """Compare ``hidden @ W^T`` with the model's own logits on 16 tokens of the batch (once per model)."""
        unwrapped = self.accelerator.unwrap_model(model)
        head = self._output_head(model)
        ids = torch.cat([inputs["prompt_ids"][:1], inputs["completion_ids"][:1]], dim=1)[:, -16:]
        kwargs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "use_cache": False}
        was_training = unwrapped.training
        unwrapped.eval()
        try:
            logits = unwrapped(**kwargs).logits.float()
            with lm_head_returns_hidden(head):
                hidden = unwrapped(**kwargs).logits
        finally:
            unwrapped.train(was_training)
        weight = whole_head_weight(unwrapped, head)
        if hidden.shape[-1] != weight.shape[1]:
            return False
        mm = self._matmul_dtype() or weight.dtype
        rebuilt = (hidden.to(mm) @ weight.to(mm).T).float()
        scale = max(1.0, float(logits.abs().max()))
        tol = 1e-4 if mm == torch.float32 else 2e-2
        return rebuilt.shape == logits.shape and bool(((rebuilt - logits).abs().max() <= tol * scale).item())

    # ---- forward to hidden states -----------------------------------------------------------------------------------

    def _forward_hidden(self, model, input_ids, attention_mask, logits_to_keep: int):
        """TRL's ``_forward_logits`` with the LM head as identity: ``([B, logits_to_keep, H], lm_head.weight)``.

        The weight is whole (see :func:`whole_head_weight`), except a trainable ZeRO-3 one, which the loss uses
        inside the head's forward (:meth:`_with_student_head`).
        """
        head = self._output_head(model)
        model_inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "use_cache": False}
        if "logits_to_keep" in self.model_kwarg_keys:
            model_inputs["logits_to_keep"] = logits_to_keep + 1
        with lm_head_returns_hidden(head):
            hidden = model(**model_inputs).logits
        hidden = hidden[:, :-1, :][:, -logits_to_keep:, :]
        if _is_zero3_param(head.weight) and torch.is_grad_enabled() and head.weight.requires_grad:
            return hidden, head.weight
        return hidden, whole_head_weight(self.accelerator.unwrap_model(model), head, self._matmul_dtype())

    def _with_student_head(self, model, hidden: torch.Tensor, weight: torch.Tensor, fn):
        """``fn(hidden, weight)``; for a ZeRO-3 partitioned weight, called inside the LM head module's forward.

        ZeRO-3 gathers a module's parameters in its pre-forward hook, releases them after the forward, gathers them
        again when the backward reaches the module's outputs and reduces their gradients: running the loss as the
        head's forward gives the loss's use of the weight exactly that treatment. ``fn`` returns a tuple of tensors.
        """
        if not _is_zero3_param(weight):
            return fn(hidden, weight)
        head = self._output_head(model)
        with module_forward_replaced(head, lambda h: fn(h, head.weight)):
            return head(hidden)

    # ---- TRL overrides ----------------------------------------------------------------------------------------------

    def _compute_teacher_student_logits(self, model, teacher_model, inputs):
        reason = self._loss_blocker(model, inputs)
        if reason is not None:
            self._report_fallback(reason)
            self.loss_path_counts["full_logits"] += 1
            self.full_logit_reasons.append(reason)
            return super()._compute_teacher_student_logits(model, teacher_model, inputs)
        self.loss_path_counts["chunked"] += 1

        prompt_ids, prompt_mask = inputs["prompt_ids"], inputs["prompt_mask"]
        completion_ids, completion_mask = inputs["completion_ids"], inputs["completion_mask"]
        logits_to_keep = completion_ids.size(1)
        self_distillation_mask = inputs.get("self_distillation_mask")
        if self_distillation_mask is None:
            loss_mask = completion_mask
        else:
            loss_mask = completion_mask * self_distillation_mask.unsqueeze(1)

        student_hidden, student_weight = self._forward_hidden(
            model,
            torch.cat([prompt_ids, completion_ids], dim=1),
            torch.cat([prompt_mask, completion_mask], dim=1),
            logits_to_keep,
        )
        with torch.no_grad(), self._get_teacher_context_for_self_distillation():
            teacher_hidden, teacher_weight = self._forward_hidden(
                teacher_model, inputs["teacher_input_ids"], inputs["teacher_attention_mask"], logits_to_keep
            )
        return DistillationHiddenStates(
            completion_ids=completion_ids,
            completion_mask=completion_mask,
            loss_mask=loss_mask,
            student_hidden=student_hidden,
            teacher_hidden=teacher_hidden.detach(),
            student_weight=student_weight,
            teacher_weight=teacher_weight.detach(),
        )

    def _compute_self_distillation_loss(self, model, inputs, distillation_logits):
        if not isinstance(distillation_logits, DistillationHiddenStates):
            loss = super()._compute_self_distillation_loss(model, inputs, distillation_logits)
            if self.distillation_listeners and distillation_logits.loss_mask.sum() > 0:
                self._notify_listeners_from_logits(inputs, distillation_logits)
            return loss
        d = distillation_logits
        mode = "train" if model.training else "eval"
        if d.loss_mask.sum() == 0:
            self._log_self_distillation_metric(mode, 0.0)
            # Zero loss attached to the student graph: zero gradients instead of a stopped backward. Under ZeRO-3
            # this too runs as the head's forward: every rank must gather (and reduce) the head weight alike.
            (zero,) = self._with_student_head(
                model, d.student_hidden, d.student_weight, lambda h, w: ((h.sum() + w.sum()) * 0.0,)
            )
            return zero

        topk = None
        if self.args.distillation_mode == "topk_logits":
            if self.args.distillation_topk is None:
                raise ValueError("`distillation_mode='topk_logits'` requires `distillation_topk` to be set.")
            topk = self.args.distillation_topk
        old_logps = inputs.get("old_per_token_logps")
        use_is = self.args.distillation_is_clip is not None and old_logps is not None
        token_weights = self.distillation_token_weights(d.completion_ids, d.loss_mask)

        def _per_token(student_hidden: torch.Tensor, student_weight: torch.Tensor):
            o = self_distillation_per_token(
                student_hidden,
                student_weight,
                d.teacher_hidden,
                d.teacher_weight,
                mask=d.loss_mask,
                topk=topk,
                add_tail=self.args.distillation_add_tail,
                alpha=self.args.distillation_alpha,
                temperature=self.temperature,
                target_ids=d.completion_ids if use_is else None,
                old_logps=old_logps if use_is else None,
                is_clip=self.args.distillation_is_clip if use_is else None,
                token_weights=token_weights,
                chunk_size=self.distillation_chunk_size,
                matmul_dtype=self._matmul_dtype(),
            )
            if not self.distillation_listeners:
                return o.per_token_loss, None
            with torch.no_grad():  # here, where the weight is whole on every sharding (ZeRO-3: inside the head)
                student_logps = token_logprobs(
                    student_hidden.detach(),
                    student_weight.detach(),
                    d.completion_ids,
                    temperature=self.temperature,
                    chunk_size=self.distillation_chunk_size,
                    matmul_dtype=self._matmul_dtype(),
                )
            return o.per_token_loss, student_logps

        per_token_loss, student_logps = self._with_student_head(model, d.student_hidden, d.student_weight, _per_token)
        self.chunked_calls += 1
        # per_token_loss: weighted by the IS clip and masked
        per_token_loss = self.transform_per_token_loss(per_token_loss, d.completion_ids, d.loss_mask)
        if self.distillation_listeners:
            self._notify_distillation_listeners(d, per_token_loss, student_logps)
        loss = reduce_per_token(per_token_loss, d.loss_mask, "sequence_mean")
        mean_distill_loss = per_token_loss.detach().sum() / d.loss_mask.sum().clamp(min=1.0)
        self._log_self_distillation_metric(mode, self.accelerator.gather(mean_distill_loss).mean().item())
        return loss

    def _compute_rollout_logps(self, prompt_ids, prompt_mask, completion_ids, completion_mask):
        if not (self.chunked_distillation and self.chunked_rollout_logps):
            return super()._compute_rollout_logps(prompt_ids, prompt_mask, completion_ids, completion_mask)
        reason = self._model_blocker(self.model, {"prompt_ids": prompt_ids, "completion_ids": completion_ids})
        if reason is not None:
            self._report_fallback(reason)
            return super()._compute_rollout_logps(prompt_ids, prompt_mask, completion_ids, completion_mask)
        generate_every = self.args.steps_per_generation * self.num_iterations
        if self.args.gradient_accumulation_steps % generate_every == 0:
            return None
        logits_to_keep = completion_ids.size(1)
        with torch.no_grad():
            hidden, weight = self._forward_hidden(
                self.model,
                torch.cat([prompt_ids, completion_ids], dim=1),
                torch.cat([prompt_mask, completion_mask], dim=1),
                logits_to_keep,
            )
            return token_logprobs(
                hidden,
                weight,
                completion_ids,
                temperature=self.temperature,
                chunk_size=self.distillation_chunk_size,
                matmul_dtype=self._matmul_dtype(),
            )
