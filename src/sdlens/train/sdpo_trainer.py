"""``SdlensSDPOTrainer``: the SDPO trainer ``sdlens train`` runs, with its config ``SdlensSDPOConfig``.

A subclass of TRL 1.16's ``trl.experimental.sdpo.SDPOTrainer``; everything not listed here (generation, rewards,
teacher EMA, optimisation, checkpoints) is TRL's. What it adds, each as config fields and overridden methods of this
one class:

- **The chunked distillation loss** (docs/distill_loss.md; ``chunked_distillation``, on by default): student and
  teacher run with the LM head as the identity, and the loss is computed from hidden states x head weight in chunks
  with recomputation in backward (:func:`sdlens.losses.self_distillation_per_token`), never materialising
  ``[B, T, V]`` logits; rollout-time log-probs likewise. It is used when ``distillation_weight == 1.0`` (the paper), no
  teacher server, ``distillation_mode`` in {``topk_logits``, ``full_logits``}, the model is not FSDP1-wrapped, its
  output layer is a plain bias-free ``nn.Linear``, and a one-time check on 16 tokens confirms ``hidden @ W^T``
  reproduces the model's logits; otherwise TRL's path runs and the reason is logged once and reported by
  :meth:`SdlensSDPOTrainer.distillation_loss_path` (``run_summary.json``). Sharded weights (FSDP2, ZeRO-3):
  :mod:`sdlens.losses.heads`.
- **The paper's teacher context** (``teacher_context="sdlens"``): TRL's builder replaced by
  :class:`sdlens.train.teacher.PaperTeacherContextBuilder`, logging teacher prompts to ``teacher_prompts_log``.
- **A distributed fix**: TRL 1.16 all-gathers its loss metric only on ranks whose micro-batch has a teacher; a rank
  without one would leave the others waiting forever, so it joins that all-gather with a zero.
- **Telemetry hooks**: ``distillation_listeners`` (each distillation pass's per-token student / teacher log-probs
  and loss), ``rollout_listeners`` (each training rollout batch's completions and rewards) and ``log_listeners``
  (extra numbers added to each log record, before TRL reports it); :mod:`sdlens.monitor` uses all three.
- **The research options** (``research=SDPOResearchConfig(...)``, :mod:`sdlens.mitigations`, docs/mitigations.md),
  kept apart from the core config: the teacher context ladder, hedge-aware weighting and clipping, GRPO mixing
  switched on by the suppression detector, AntiSD, and the literature's follow-up methods (Purified OPSD, RLCSD,
  PW-OPSD, EGRSD, SSOPD). Their math lives in the ``sdlens.mitigations`` modules; here they are wired into the loss.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

from trl.experimental.sdpo import SDPOConfig, SDPOTrainer

from sdlens.epistemic.tokens import hedge_position_mask
from sdlens.fields import field_default
from sdlens.imports import import_callable
from sdlens.losses.distill import (
    logps_entropy_from_logits,
    reduce_per_token,
    self_distillation_per_token,
    token_logprobs,
)
from sdlens.losses.heads import (
    DistillationHiddenStates,
    is_zero3_param,
    lm_head_returns_hidden,
    module_forward_replaced,
    sharding_kind,
    whole_head_weight,
)
from sdlens.mitigations import builders
from sdlens.mitigations.antisd import EntropyGate, antisd_advantages, antisd_phi
from sdlens.mitigations.context import LadderTeacherContextBuilder
from sdlens.mitigations.egrsd import egrsd_advantages, egrsd_gate, lookahead_entropy
from sdlens.mitigations.hedge import class_clip, hedge_weights
from sdlens.mitigations.mixing import MixingSwitch, monitor_state
from sdlens.mitigations.options import SDPOResearchConfig, needs_state
from sdlens.mitigations.position import position_weights
from sdlens.mitigations.purified import purified_target_logprobs
from sdlens.mitigations.rlcsd import rlcsd_advantages, rlcsd_contrast
from sdlens.mitigations.state import MitigationStateCallback
from sdlens.train.teacher import PaperTeacherContextBuilder

__all__ = ["PAPER_SDPO_LOSS", "DistillationPass", "SdlensSDPOConfig", "SdlensSDPOTrainer"]

logger = logging.getLogger(__name__)

# The paper's distillation loss (docs/paper.md 6.3 / 13.5) as SdlensSDPOConfig keyword arguments, chunked path on.
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
class SdlensSDPOConfig(SDPOConfig):
    """TRL's ``SDPOConfig`` plus the chunked loss's switches and the paper's teacher context."""

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
    teacher_context: str = field(
        default="trl",
        metadata={"help": "Teacher prompts: trl (TRL's builder) or sdlens (the paper's, pre-opened <think> fix)."},
    )
    reprompt_truncation: str = field(
        default="right",
        metadata={"help": "sdlens teacher context: cut over-long teacher prompts at the right (paper) or the left."},
    )
    log_teacher_prompts: int = field(
        default=1, metadata={"help": "sdlens teacher context: teacher prompts per rollout batch written to the log."}
    )
    teacher_prompts_log: str | None = field(
        default=None, metadata={"help": "sdlens teacher context: JSONL file of teacher prompts (None: not written)."}
    )


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


class SdlensSDPOTrainer(SDPOTrainer):
    """TRL's ``SDPOTrainer`` with the chunked loss, the paper's teacher context, telemetry hooks and the research
    options (see the module docstring).

    Args (beyond ``SDPOTrainer``'s; ``args`` is an :class:`SdlensSDPOConfig`):
        research: the research options (:class:`~sdlens.mitigations.options.SDPOResearchConfig`); ``None``: none.
        mix_state_fn: for ``research.mix_on_suppression``, the detector to read (a no-argument callable returning
            ``ok`` / ``warning`` / ``suppressing``); default: ``research.mix_detector``, else the suppression detector
            of the epistemic monitor attached later (:func:`sdlens.monitor.monitor_trainer`).
    """

    def __init__(self, *args: Any, research: SDPOResearchConfig | None = None, mix_state_fn=None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        cfg = self.args
        self.chunked_distillation = bool(self._sdlens_arg("chunked_distillation"))
        self.distillation_chunk_size = self._sdlens_arg("distillation_chunk_size")
        self.chunked_rollout_logps = bool(self._sdlens_arg("chunked_rollout_logps"))
        self._head_ok: dict[int, bool] = {}
        self._fallback_reported: set[str] = set()
        self.chunked_calls = 0  # how many losses went through the chunked path (tests, diagnostics)
        # teacher/student passes per path ("chunked" / "full_logits") and why the full-logit ones were taken
        self.loss_path_counts: dict[str, int] = {"chunked": 0, "full_logits": 0}
        self.full_logit_reasons: list[str] = []
        # telemetry: callables given each DistillationPass / (completions, completion_ids, rewards) of a training
        # rollout batch / nothing (returning numbers to add to the log record)
        self.distillation_listeners: list[Any] = []
        self.rollout_listeners: list[Any] = []
        self.log_listeners: list[Any] = []
        if self._sdlens_arg("teacher_context") == "sdlens":
            self.teacher_context_builder = PaperTeacherContextBuilder(
                self,
                truncation=cfg.reprompt_truncation,
                log_path=cfg.teacher_prompts_log,
                log_per_batch=cfg.log_teacher_prompts,
            )
        self.research = research
        self.mix_weight: float | None = None  # set by the detector switch (sdlens.mitigations.mixing)
        self.mitigation_answers: list[Any] = []  # the rows' ground truths, for the answer-only teacher rung
        self._hedge_cache: tuple[torch.Tensor, torch.Tensor] | None = None
        self._loss_inputs: dict[str, Any] = {}
        self.antisd_gate: EntropyGate | None = None
        self.mixing_switch: MixingSwitch | None = None
        if research is not None:
            self._set_up_research(research, mix_state_fn)

    def _sdlens_arg(self, name: str) -> Any:
        """``self.args.<name>``, or :class:`SdlensSDPOConfig`'s default where the trainer runs on TRL's own
        ``SDPOConfig``, which lacks sdlens' fields."""
        return getattr(self.args, name, field_default(SdlensSDPOConfig, name))

    # ---- research options: set-up and summary ----------------------------------------------------------------------

    def _set_up_research(self, r: SDPOResearchConfig, mix_state_fn) -> None:
        """The research options' teacher builders, detector switch and checkpointed state."""
        self.antisd_gate = EntropyGate(r.antisd_warmup_steps, r.antisd_gate_ratio, r.antisd_gate)
        old = self.teacher_context_builder
        kwargs = {
            "truncation": getattr(old, "truncation", self._sdlens_arg("reprompt_truncation")),
            "log_path": getattr(old, "log_path", None),
            "log_per_batch": getattr(old, "log_per_batch", self._sdlens_arg("log_teacher_prompts")),
        }
        if r.teacher_richness is not None:
            self.teacher_context_builder = LadderTeacherContextBuilder(self, r.teacher_richness, **kwargs)
        if r.purified:
            self.teacher_context_builder = builders.PurifiedTeacherContextBuilder(self, **kwargs)
        elif r.rlcsd:
            self.teacher_context_builder = builders.ContrastTeacherContextBuilder(self, r.rlcsd_negatives, **kwargs)
        elif r.ssopd:
            self.teacher_context_builder = builders.SsopdTeacherContextBuilder(self, **kwargs)
        if r.mix_on_suppression is not None:
            if mix_state_fn is None and r.mix_detector:
                mix_state_fn = import_callable(r.mix_detector, "mix_detector")(self)
            state_fn = mix_state_fn if mix_state_fn is not None else monitor_state(self)
            self.mixing_switch = MixingSwitch(self, state_fn, r.mix_on_suppression, r.mix_trigger)
            self.add_callback(self.mixing_switch)
        if needs_state(r):
            self.add_callback(MitigationStateCallback(self))

    def research_summary(self) -> dict[str, Any] | None:
        """For ``run_summary.json``: which mitigations ran and what their switches did."""
        m = self.research
        if m is None:
            return None
        builder = self.teacher_context_builder
        out: dict[str, Any] = {"teacher_richness": getattr(builder, "rung", None), **asdict(m)}
        if self.mixing_switch is not None:
            out["mix_switched_at_step"] = self.mixing_switch.switched_at
        if m.antisd:
            out["antisd_h_warm"] = self.antisd_gate.h_warm
            out["antisd_gate_open_at_end"] = self.antisd_gate.is_open
        return out

    # ---- telemetry ---------------------------------------------------------------------------------------------

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        if self.model.training:
            for listener in self.rollout_listeners:
                listener(completions, completion_ids_list, rewards)
        return rewards

    def log(self, logs: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        if not any(str(k).startswith("eval_") for k in logs):
            for listener in self.log_listeners:
                logs.update(listener())
        return super().log(logs, *args, **kwargs)

    def _notify_distillation_listeners(
        self, d: DistillationHiddenStates, per_token_loss: torch.Tensor, student_logps: torch.Tensor
    ) -> None:
        """Hand each listener the sampled tokens' student and teacher log-probs and the per-token loss (no grad)."""
        with torch.no_grad():
            kw = self._chunking()
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
        if self.research is not None and self.current_distillation_weight() != 1.0:
            return "distillation_weight < 1 (GRPO mixing) needs the student's full logits for the policy loss"
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
            logger.warning("SdlensSDPOTrainer: using TRL's full-logit path because %s.", reason)

    def _matmul_dtype(self) -> torch.dtype | None:
        """The LM head matmul dtype TRL's path gets from accelerate's autocast (bf16 / fp16 mixed precision)."""
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(str(self.accelerator.mixed_precision))

    def _chunking(self) -> dict[str, Any]:
        """How every chunked pass over hidden states computes its logits: the sampling temperature, the chunk size
        and the matmul dtype."""
        return {
            "temperature": self.temperature,
            "chunk_size": self.distillation_chunk_size,
            "matmul_dtype": self._matmul_dtype(),
        }

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
        if is_zero3_param(head.weight) and torch.is_grad_enabled() and head.weight.requires_grad:
            return hidden, head.weight
        return hidden, whole_head_weight(self.accelerator.unwrap_model(model), head, self._matmul_dtype())

    def _with_student_head(self, model, hidden: torch.Tensor, weight: torch.Tensor, fn):
        """``fn(hidden, weight)``; for a ZeRO-3 partitioned weight, called inside the LM head module's forward.

        ZeRO-3 gathers a module's parameters in its pre-forward hook, releases them after the forward, gathers them
        again when the backward reaches the module's outputs and reduces their gradients: running the loss as the
        head's forward gives the loss's use of the weight exactly that treatment. ``fn`` returns a tuple of tensors.
        """
        if not is_zero3_param(weight):
            return fn(hidden, weight)
        head = self._output_head(model)
        with module_forward_replaced(head, lambda h: fn(h, head.weight)):
            return head(hidden)

    # ---- research options: the rows' answers, per-token weights and clipping ------------------------------------

    def _prepare_training_batch(self, inputs):
        self.mitigation_answers = [ex.get("answer") for ex in inputs]
        batch = super()._prepare_training_batch(inputs)
        # extra teacher inputs of the follow-up builders (sdlens.mitigations.builders), split with the batch
        batch.update(getattr(self.teacher_context_builder, "extra_batch", None) or {})
        return batch

    def hedge_mask(self, completion_ids: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor:
        """Hedge positions among the distilled tokens ``[B, T]`` (cached for the current batch)."""
        if self._hedge_cache is None or self._hedge_cache[0] is not completion_ids:
            mask = hedge_position_mask(completion_ids, self.processing_class, self.research.hedge_lexicon)
            self._hedge_cache = (completion_ids, mask.to(completion_ids.device) & loss_mask.bool())
        return self._hedge_cache[1]

    def distillation_token_weights(self, completion_ids: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor | None:
        """Per-token weights ``[B, T]`` multiplied (detached) into the distillation loss; ``None``: all ones."""
        m = self.research
        if m is None:
            return None
        factors = []
        if m.hedge_weight != 1.0:
            hedge = self.hedge_mask(completion_ids, loss_mask)
            mode = "train" if self.model.training else "eval"
            share = float(hedge.sum()) / max(1.0, float(loss_mask.sum()))
            self._metrics[mode]["mitigation/hedge_token_fraction"].append(share)
            factors.append(hedge_weights(hedge, m.hedge_weight))
        if m.position_weights:  # PW-OPSD
            w_min, center, width = m.position_weight_min, m.position_weight_center, m.position_weight_width
            factors.append(position_weights(loss_mask, w_min, center, width))
        if m.ssopd:  # the frontier weight of each rollout's prompt
            per_row = self._loss_inputs["ssopd_frontier"].to(torch.float32)
            factors.append(per_row[:, None].expand(loss_mask.shape[0], loss_mask.shape[1]))
        if not factors:
            return None
        out = factors[0]
        for f in factors[1:]:
            out = out * f
        return out

    def transform_per_token_loss(self, per_token_loss, completion_ids, loss_mask):
        """The masked, weighted per-token loss ``[B, T]`` before its mean: clipped per token class if asked."""
        m = self.research
        if m is None or (m.hedge_clip is None and m.other_clip is None):
            return per_token_loss
        hedge = self.hedge_mask(completion_ids, loss_mask)
        clipped = class_clip(per_token_loss, hedge, m.hedge_clip, m.other_clip)
        mode = "train" if self.model.training else "eval"
        hit = (clipped.detach() < per_token_loss.detach()) & loss_mask.bool()
        self._metrics[mode]["mitigation/clipped_fraction"].append(float(hit.sum()) / max(1.0, float(loss_mask.sum())))
        return clipped

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
        m = self.research
        per_token_hooks = m is not None and (m.hedge_aware or m.position_weights or m.ssopd)
        if per_token_hooks and not isinstance(distillation_logits, DistillationHiddenStates):
            raise RuntimeError(
                "hedge_weight / hedge_clip / other_clip / position_weights / ssopd act on sdlens' chunked loss, "
                "but this batch took TRL's full-logit path (see the warning above for why)"
            )
        loss = self._distillation_loss(model, inputs, distillation_logits)
        # the distributed fix (module docstring): after the loss, as the other ranks' metric all-gather is (under
        # ZeRO-3 the chunked loss itself gathers the head weight first, on every rank alike)
        if self.accelerator.num_processes > 1 and distillation_logits.loss_mask.sum() == 0:
            self.accelerator.gather(torch.zeros((), dtype=torch.float32, device=self.accelerator.device))
        return loss

    def _distillation_loss(self, model, inputs, distillation_logits) -> torch.Tensor:
        """TRL's loss on its logits, or the chunked loss on hidden states (weighted, clipped, told to listeners)."""
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
                target_ids=d.completion_ids if use_is else None,
                old_logps=old_logps if use_is else None,
                is_clip=self.args.distillation_is_clip if use_is else None,
                token_weights=token_weights,
                **self._chunking(),
            )
            if not self.distillation_listeners:
                return o.per_token_loss, None
            with torch.no_grad():  # here, where the weight is whole on every sharding (ZeRO-3: inside the head)
                student_logps = token_logprobs(
                    student_hidden.detach(), student_weight.detach(), d.completion_ids, **self._chunking()
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
            return token_logprobs(hidden, weight, completion_ids, **self._chunking())

    # ---- research options: the losses that replace or blend TRL's ------------------------------------------------

    def current_distillation_weight(self) -> float:
        return float(self.args.distillation_weight if self.mix_weight is None else self.mix_weight)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        m = self.research
        if m is not None and m.mix_on_suppression is not None:
            mode = "train" if self.model.training else "eval"
            self._metrics[mode]["mitigation/distillation_weight"].append(self.current_distillation_weight())
        self._loss_inputs = inputs  # for the per-token hooks (SSOPD's frontier weights)
        own = m is not None and (m.antisd or m.purified or m.rlcsd or m.egrsd or m.ssopd)
        if m is None or (not own and self.mix_weight is None):
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if return_outputs:
            raise ValueError("The SDPOTrainer does not support returning outputs")
        if m.antisd:
            loss = self._antisd_loss(model, inputs)
        elif m.egrsd:
            loss = self._egrsd_loss(model, inputs)
        elif m.rlcsd:
            loss = self._rlcsd_loss(model, inputs)
        elif m.purified:
            loss = self._purified_loss(model, inputs)
        elif m.ssopd:
            loss = self._ssopd_loss(model, inputs)
        else:
            loss = self._mixed_loss(model, inputs, self.current_distillation_weight())
        scale = self.current_gradient_accumulation_steps if self.model.training else 1.0
        return loss / scale

    def _student_logits(self, model, inputs) -> torch.Tensor:
        return self._forward_logits(
            model=model,
            input_ids=torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1),
            attention_mask=torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1),
            logits_to_keep=inputs["completion_ids"].size(1),
        )

    def _mixed_loss(self, model, inputs, weight: float) -> torch.Tensor:
        """TRL's blend ``(1 - w) * policy + w * distillation`` with the switched weight ``w``."""
        if weight == 0.0:
            return self._compute_policy_loss(inputs, self._student_logits(model, inputs))
        d = self._compute_teacher_student_logits(model, self.teacher_model, inputs)
        policy = self._compute_policy_loss(inputs, d.student_logits)
        distill = self._compute_self_distillation_loss(model, inputs, d)
        return (1.0 - weight) * policy + weight * distill

    def _teacher_logps_entropy(
        self, inputs, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The teacher's log-prob of each sampled token and its next-token entropy, ``[B, T]`` each, no grad, on
        ``input_ids`` (default: the batch's teacher inputs; any prompt + the same response tokens)."""
        ids = inputs["completion_ids"]
        keep = ids.size(1)
        if input_ids is None:
            input_ids, attention_mask = inputs["teacher_input_ids"], inputs["teacher_attention_mask"]
        hidden_ok = self.chunked_distillation
        if hidden_ok and self._model_blocker(self.teacher_model, inputs) is not None:
            hidden_ok = False
        with torch.no_grad(), self._get_teacher_context_for_self_distillation():
            if hidden_ok:
                hidden, weight = self._forward_hidden(self.teacher_model, input_ids, attention_mask, keep)
                return token_logprobs(hidden, weight, ids, entropy=True, **self._chunking())
            logits = self._forward_logits(self.teacher_model, input_ids, attention_mask, keep)
            return logps_entropy_from_logits(logits, ids)

    def _antisd_loss(self, model, inputs) -> torch.Tensor:
        m = self.research
        completion_mask = inputs["completion_mask"]
        sd_mask = inputs.get("self_distillation_mask")
        mask = completion_mask if sd_mask is None else completion_mask * sd_mask.unsqueeze(1)
        student_logits = self._student_logits(model, inputs)
        with torch.no_grad():
            student_logps = torch.log_softmax(student_logits.float(), dim=-1)
            student_logps = student_logps.gather(-1, inputs["completion_ids"].unsqueeze(-1)).squeeze(-1)
        teacher_logps, entropy = self._teacher_logps_entropy(inputs)
        u = teacher_logps - student_logps
        # One entropy for the gate, over every process's distilled tokens, so all ranks take the same decision.
        maskf = mask.float()
        stats = torch.stack([(entropy * maskf).sum(), maskf.sum(), (u * maskf).sum()]).reshape(1, 3)
        total = self.accelerator.gather(stats).reshape(-1, 3).sum(0)
        mean_entropy = float(total[0] / total[1]) if float(total[1]) > 0 else None
        active = self.antisd_gate.update(int(self.state.global_step), mean_entropy)
        advantages = antisd_advantages(inputs["advantages"], u, mask, m.antisd_lambda, active)
        loss = self._compute_policy_loss({**inputs, "advantages": advantages}, student_logits)
        mode = "train" if self.model.training else "eval"
        metrics = self._metrics[mode]
        metrics["antisd/gate_open"].append(float(active))
        if mean_entropy is not None:
            metrics["antisd/teacher_entropy"].append(mean_entropy)
            metrics["antisd/pmi_mean"].append(float(total[2] / total[1]))
            phi = (antisd_phi(u) * maskf).sum() / maskf.sum().clamp(min=1.0)
            metrics["antisd/phi_mean"].append(float(phi))
        if self.antisd_gate.h_warm is not None:
            metrics["antisd/h_warm"].append(float(self.antisd_gate.h_warm))
        return loss

    # ---- the follow-up methods (docs/mitigations.md section 5) ---------------------------------------------------

    def _distilled_mask(self, inputs) -> torch.Tensor:
        """Response tokens of the rollouts with a teacher ``[B, T]``."""
        completion_mask = inputs["completion_mask"]
        sd_mask = inputs.get("self_distillation_mask")
        return completion_mask if sd_mask is None else completion_mask * sd_mask.unsqueeze(1)

    @staticmethod
    def _sampled_logps(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.log_softmax(logits.float(), dim=-1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)

    def _metric(self, name: str, value: float) -> None:
        self._metrics["train" if self.model.training else "eval"][name].append(float(value))

    def _egrsd_loss(self, model, inputs) -> torch.Tensor:
        """GRPO with EGRSD-style per-token advantages (sdlens.mitigations.egrsd)."""
        m = self.research
        mask = self._distilled_mask(inputs)
        student_logits = self._student_logits(model, inputs)
        student_logps = self._sampled_logps(student_logits, inputs["completion_ids"])
        teacher_logps, entropy = self._teacher_logps_entropy(inputs)
        gate = egrsd_gate(lookahead_entropy(entropy, mask, m.egrsd_lookahead), m.egrsd_gate_min, m.egrsd_entropy_scale)
        log_ratio = teacher_logps - student_logps
        advantages = egrsd_advantages(
            inputs["advantages"], log_ratio, gate, mask, lam=m.egrsd_lambda, ratio_clip=m.egrsd_ratio_clip
        )
        loss = self._compute_policy_loss({**inputs, "advantages": advantages}, student_logits)
        maskf = mask.float()
        if float(maskf.sum()) > 0:
            self._metric("egrsd/gate_mean", (gate * maskf).sum() / maskf.sum())
            self._metric("egrsd/teacher_entropy", (entropy * maskf).sum() / maskf.sum())
        return loss

    def _rlcsd_loss(self, model, inputs) -> torch.Tensor:
        """RLCSD: GRPO whose selected tokens get the contrast-shaped advantage (sdlens.mitigations.rlcsd)."""
        m = self.research
        mask = self._distilled_mask(inputs)
        student_logits = self._student_logits(model, inputs)
        positive, _ = self._teacher_logps_entropy(inputs)
        c_ids, c_att, c_mask = inputs["contrast_input_ids"], inputs["contrast_attention_mask"], inputs["contrast_mask"]
        negatives = torch.zeros(c_ids.shape[0], c_ids.shape[1], positive.shape[1], device=positive.device)
        for k in range(c_ids.shape[1]):
            if bool(c_mask[:, k].any()):
                ids_k, att_k = c_ids[:, k].contiguous(), c_att[:, k].contiguous()
                negatives[:, k] = self._teacher_logps_entropy(inputs, ids_k, att_k)[0]
        contrast = rlcsd_contrast(positive, negatives, c_mask)
        advantages, selected = rlcsd_advantages(
            inputs["advantages"],
            contrast,
            mask,
            tau=m.rlcsd_tau,
            scale=m.rlcsd_scale,
            threshold=m.rlcsd_threshold,
            r_max=m.rlcsd_clip,
        )
        completion_mask = inputs["completion_mask"]
        sel = selected.to(completion_mask.dtype)
        plain = self._compute_policy_loss({**inputs, "completion_mask": completion_mask * (1 - sel)}, student_logits)
        shaped = self._compute_policy_loss(
            {**inputs, "completion_mask": completion_mask * sel, "advantages": advantages}, student_logits
        )
        maskf = mask.float()
        if float(maskf.sum()) > 0:
            self._metric("rlcsd/selected_fraction", float(sel.sum()) / float(completion_mask.sum().clamp(min=1)))
            self._metric("rlcsd/contrast_abs_mean", (contrast.abs() * maskf).sum() / maskf.sum())
        return plain + m.rlcsd_eta * shaped

    def _require_hidden(self, model, inputs, what: str) -> None:
        reason = "chunked_distillation is off" if not self.chunked_distillation else None
        reason = reason or self._model_blocker(model, inputs) or self._model_blocker(self.teacher_model, inputs)
        if reason is not None:
            raise RuntimeError(f"{what} needs the models' hidden states and LM head, but {reason}")

    def _purified_loss(self, model, inputs) -> torch.Tensor:
        """Purified OPSD: JSD to the PMI target of three frozen-teacher passes (sdlens.mitigations.purified)."""
        m = self.research
        self._require_hidden(model, inputs, "purified")
        ids = inputs["completion_ids"]
        keep = ids.size(1)
        mask = self._distilled_mask(inputs)
        student_ids = torch.cat([inputs["prompt_ids"], ids], dim=1)
        student_att = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
        hs, w = self._forward_hidden(model, student_ids, student_att, keep)
        with torch.no_grad(), self._get_teacher_context_for_self_distillation():
            teacher = self.teacher_model
            ht, wt = self._forward_hidden(teacher, inputs["teacher_input_ids"], inputs["teacher_attention_mask"], keep)
            hr, _ = self._forward_hidden(teacher, inputs["ref_input_ids"], inputs["ref_attention_mask"], keep)
            h0, _ = self._forward_hidden(teacher, student_ids, student_att, keep)
        old = inputs.get("old_per_token_logps")
        use_is = self.args.distillation_is_clip is not None and old is not None  # sdpo-paper's IS clip
        target = functools.partial(purified_target_logprobs, clip=m.purified_clip, beta=m.purified_beta)
        per_token = self_distillation_per_token(
            hs,
            w,
            (ht, hr, h0),
            wt,
            mask=mask,
            topk=None,
            alpha=self.args.distillation_alpha,
            target_ids=ids if use_is else None,
            old_logps=old if use_is else None,
            is_clip=self.args.distillation_is_clip if use_is else None,
            teacher_target=target,
            **self._chunking(),
        ).per_token_loss
        loss = reduce_per_token(per_token, mask, "sequence_mean")
        mean = per_token.detach().sum() / mask.sum().clamp(min=1.0)
        mode = "train" if self.model.training else "eval"
        self._log_self_distillation_metric(mode, self.accelerator.gather(mean).mean().item())
        return loss

    def _ssopd_loss(self, model, inputs) -> torch.Tensor:
        """SSOPD: GRPO + ``ssopd_weight`` x the chunked distillation on the chosen rollouts, frontier-weighted
        through ``distillation_token_weights``; the policy's logits come from the same student hidden states."""
        d = self._compute_teacher_student_logits(model, self.teacher_model, inputs)
        if not hasattr(d, "student_hidden"):
            raise RuntimeError("ssopd needs sdlens' chunked loss, but this batch took TRL's full-logit path")
        distill = self._compute_self_distillation_loss(model, inputs, d)
        mm = self._matmul_dtype()
        weight = d.student_weight if mm is None else d.student_weight.to(mm)
        logits = (d.student_hidden.to(weight.dtype) @ weight.T).float() / self.temperature
        policy = self._compute_policy_loss(inputs, logits)
        return policy + self.research.ssopd_weight * distill
