"""The SDPO trainer with the mitigations switched on by a :class:`~sdlens.train.config.TrainConfig`.

:func:`mitigation_trainer_class` subclasses the runner's SDPO trainer (``ChunkedSDPOTrainer`` or TRL's
``SDPOTrainer``, with the runner's distributed fix) and overrides only what each mitigation needs:

- ``_prepare_training_batch``: keeps the rows' ground-truth answers for the ``answer-only`` teacher rung.
- ``distillation_token_weights`` / ``transform_per_token_loss`` (the chunked loss's hooks): hedge-aware weighting
  and per-class clipping (:mod:`sdlens.mitigations.hedge`).
- ``compute_loss``: AntiSD (:mod:`sdlens.mitigations.antisd`) replaces the loss; after the suppression detector
  fires (``mix_on_suppression``), TRL's policy + distillation blend with the new weight.
- the follow-up methods (docs/mitigations.md section 5): PW-OPSD's position weights through
  ``distillation_token_weights``; Purified OPSD's PMI target (its own chunked loss), RLCSD's and EGRSD's per-token
  advantages (GRPO's clipped surrogate) and SSOPD's GRPO + frontier-weighted distillation in ``compute_loss``.

Options come from :class:`MitigationSettings`, set on the trainer after construction (``trainer.mitigations``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from sdlens.mitigations.antisd import (
    EntropyGate,
    antisd_advantages,
    antisd_phi,
    logps_entropy_from_hidden,
    logps_entropy_from_logits,
)
from sdlens.mitigations.egrsd import egrsd_advantages
from sdlens.mitigations.hedge import class_clip, hedge_weights
from sdlens.mitigations.position import position_weights
from sdlens.mitigations.rlcsd import rlcsd_advantages, rlcsd_contrast

__all__ = ["MitigationSettings", "mitigation_trainer_class"]


@dataclass
class MitigationSettings:
    """The loss-side mitigation options (see ``TrainConfig``'s fields of the same names)."""

    hedge_weight: float = 1.0
    hedge_lexicon: str = "words"
    hedge_clip: float | None = None
    other_clip: float | None = None
    mix_on_suppression: float | None = None
    antisd: bool = False
    antisd_lambda: float = 1.0
    antisd_gate: bool = True
    antisd_warmup_steps: int = 10
    antisd_gate_ratio: float = 0.93
    purified: bool = False
    purified_clip: float = 10.0
    purified_beta: float = 1.0
    rlcsd: bool = False
    rlcsd_negatives: int = 4
    rlcsd_tau: float = 0.02
    rlcsd_scale: float = 0.5
    rlcsd_threshold: float = 0.02
    rlcsd_eta: float = 1.0
    rlcsd_clip: float = 2.0
    position_weights: bool = False
    position_weight_min: float = 0.25
    position_weight_center: float = 0.30
    position_weight_width: float = 0.10
    egrsd: bool = False
    egrsd_lambda: float = 0.5
    egrsd_ratio_clip: float = 0.2
    egrsd_gate_min: float = 0.1
    egrsd_entropy_scale: float = 1.0
    egrsd_lookahead: int = 0
    ssopd: bool = False
    ssopd_weight: float = 1.0

    @classmethod
    def from_config(cls, cfg: Any) -> MitigationSettings:
        return cls(**{name: getattr(cfg, name) for name in cls.__dataclass_fields__})

    @property
    def hedge_aware(self) -> bool:
        return self.hedge_weight != 1.0 or self.hedge_clip is not None or self.other_clip is not None


_CLASSES: dict[bool, type] = {}


def mitigation_trainer_class(chunked: bool) -> type:
    """The mitigation trainer over ``sdlens.train.runner.sdpo_trainer_class(chunked)``."""
    if chunked not in _CLASSES:
        from sdlens.train.runner import sdpo_trainer_class

        base = sdpo_trainer_class(chunked)
        _CLASSES[chunked] = type(f"Mitigation{base.__name__}", (_MitigationMixin, base), {})
    return _CLASSES[chunked]


class _MitigationMixin:
    """Mixed in before the SDPO trainer class; inert until ``configure_mitigations`` is called."""

    mitigations: MitigationSettings | None = None

    def configure_mitigations(self, settings: MitigationSettings) -> None:
        self.mitigations = settings
        self.mitigation_answers: list[Any] = []
        self.mix_weight: float | None = None  # set by the detector switch (sdlens.mitigations.mixing)
        self.antisd_gate = EntropyGate(settings.antisd_warmup_steps, settings.antisd_gate_ratio, settings.antisd_gate)
        self._hedge_cache: tuple[torch.Tensor, torch.Tensor] | None = None

    def mitigation_summary(self) -> dict[str, Any] | None:
        """For ``run_summary.json``: which mitigations ran and what their switches did."""
        m = self.mitigations
        if m is None:
            return None
        builder = self.teacher_context_builder
        out: dict[str, Any] = {"teacher_richness": getattr(builder, "rung", None), **asdict(m)}
        switch = getattr(self, "mixing_switch", None)
        if switch is not None:
            out["mix_switched_at_step"] = switch.switched_at
        if m.antisd:
            out["antisd_h_warm"] = self.antisd_gate.h_warm
            out["antisd_gate_open_at_end"] = self.antisd_gate.is_open
        return out

    # ---- teacher context: the answer-only rung needs each row's ground truth --------------------------------------

    def _prepare_training_batch(self, inputs):
        self.mitigation_answers = [ex.get("answer") for ex in inputs]
        batch = super()._prepare_training_batch(inputs)
        # extra teacher inputs of the follow-up builders (sdlens.mitigations.builders), split with the batch
        batch.update(getattr(self.teacher_context_builder, "extra_batch", None) or {})
        return batch

    # ---- hedge-aware distillation (the chunked loss's hooks) ---------------------------------------------------------

    def hedge_mask(self, completion_ids: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor:
        """Hedge positions among the distilled tokens ``[B, T]`` (cached for the current batch)."""
        from sdlens.epistemic.tokens import hedge_position_mask

        if self._hedge_cache is None or self._hedge_cache[0] is not completion_ids:
            mask = hedge_position_mask(completion_ids, self.processing_class, self.mitigations.hedge_lexicon)
            self._hedge_cache = (completion_ids, mask.to(completion_ids.device) & loss_mask.bool())
        return self._hedge_cache[1]

    def distillation_token_weights(self, completion_ids, loss_mask):
        m = self.mitigations
        weights = super().distillation_token_weights(completion_ids, loss_mask)
        if m is None:
            return weights
        factors = [] if weights is None else [weights]
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
        m = self.mitigations
        per_token_loss = super().transform_per_token_loss(per_token_loss, completion_ids, loss_mask)
        if m is None or (m.hedge_clip is None and m.other_clip is None):
            return per_token_loss
        hedge = self.hedge_mask(completion_ids, loss_mask)
        clipped = class_clip(per_token_loss, hedge, m.hedge_clip, m.other_clip)
        mode = "train" if self.model.training else "eval"
        hit = (clipped.detach() < per_token_loss.detach()) & loss_mask.bool()
        self._metrics[mode]["mitigation/clipped_fraction"].append(float(hit.sum()) / max(1.0, float(loss_mask.sum())))
        return clipped

    def _compute_self_distillation_loss(self, model, inputs, distillation_logits):
        m = self.mitigations
        needs_hooks = m is not None and (m.hedge_aware or m.position_weights or m.ssopd)
        if needs_hooks and not hasattr(distillation_logits, "student_hidden"):
            raise RuntimeError(
                "hedge_weight / hedge_clip / other_clip / position_weights / ssopd act on sdlens' chunked loss, but "
                "this batch took TRL's full-logit path (see the warning above for why)"
            )
        return super()._compute_self_distillation_loss(model, inputs, distillation_logits)

    # ---- the loss: AntiSD, or the detector-switched GRPO mix -----------------------------------------------------

    def current_distillation_weight(self) -> float:
        return float(self.args.distillation_weight if self.mix_weight is None else self.mix_weight)

    def _loss_blocker(self, model, inputs):
        if self.mitigations is not None and self.current_distillation_weight() != 1.0:
            return "distillation_weight < 1 (GRPO mixing) needs the student's full logits for the policy loss"
        return super()._loss_blocker(model, inputs)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        m = self.mitigations
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
        hidden_ok = getattr(self, "chunked_distillation", False) and hasattr(self, "_forward_hidden")
        if hidden_ok and self._model_blocker(self.teacher_model, inputs) is not None:
            hidden_ok = False
        with torch.no_grad(), self._get_teacher_context_for_self_distillation():
            if hidden_ok:
                hidden, weight = self._forward_hidden(self.teacher_model, input_ids, attention_mask, keep)
                return logps_entropy_from_hidden(
                    hidden,
                    weight,
                    ids,
                    temperature=self.temperature,
                    chunk_size=self.distillation_chunk_size,
                    matmul_dtype=self._matmul_dtype(),
                )
            logits = self._forward_logits(self.teacher_model, input_ids, attention_mask, keep)
            return logps_entropy_from_logits(logits, ids)

    def _antisd_loss(self, model, inputs) -> torch.Tensor:
        m = self.mitigations
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
        from sdlens.mitigations.egrsd import egrsd_gate, lookahead_entropy

        m = self.mitigations
        mask = self._distilled_mask(inputs)
        student_logits = self._student_logits(model, inputs)
        student_logps = self._sampled_logps(student_logits, inputs["completion_ids"])
        teacher_logps, entropy = self._teacher_logps_entropy(inputs)
        advantages = egrsd_advantages(
            inputs["advantages"],
            teacher_logps,
            student_logps,
            entropy,
            mask,
            lam=m.egrsd_lambda,
            ratio_clip=m.egrsd_ratio_clip,
            gate_min=m.egrsd_gate_min,
            entropy_scale=m.egrsd_entropy_scale,
            lookahead=m.egrsd_lookahead,
        )
        loss = self._compute_policy_loss({**inputs, "advantages": advantages}, student_logits)
        maskf = mask.float()
        if float(maskf.sum()) > 0:
            gate = egrsd_gate(
                lookahead_entropy(entropy, mask, m.egrsd_lookahead), m.egrsd_gate_min, m.egrsd_entropy_scale
            )
            self._metric("egrsd/gate_mean", (gate * maskf).sum() / maskf.sum())
            self._metric("egrsd/teacher_entropy", (entropy * maskf).sum() / maskf.sum())
        return loss

    def _rlcsd_loss(self, model, inputs) -> torch.Tensor:
        """RLCSD: GRPO whose selected tokens get the contrast-shaped advantage (sdlens.mitigations.rlcsd)."""
        m = self.mitigations
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
        reason = "the trainer has no chunked path" if not hasattr(self, "_forward_hidden") else None
        reason = reason or self._model_blocker(model, inputs) or self._model_blocker(self.teacher_model, inputs)
        if reason is not None:
            raise RuntimeError(f"{what} needs the models' hidden states and LM head, but {reason}")

    def _purified_loss(self, model, inputs) -> torch.Tensor:
        """Purified OPSD: JSD to the PMI target of three frozen-teacher passes (sdlens.mitigations.purified)."""
        from sdlens.losses.distill import is_clip_weights, reduce_per_token, token_logprobs
        from sdlens.mitigations.purified import purified_per_token

        m = self.mitigations
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
        kw = {"temperature": self.temperature, "chunk_size": self.distillation_chunk_size}
        per_token = purified_per_token(
            hs, w, ht, hr, h0, wt, mask, alpha=self.args.distillation_alpha, clip=m.purified_clip,
            beta=m.purified_beta, matmul_dtype=self._matmul_dtype(), **kw,
        )  # fmt: skip
        old = inputs.get("old_per_token_logps")
        if self.args.distillation_is_clip is not None and old is not None:  # sdpo-paper's IS clip
            logps = token_logprobs(hs.detach(), w.detach(), ids, matmul_dtype=self._matmul_dtype(), **kw)
            per_token = per_token * is_clip_weights(logps, old, self.args.distillation_is_clip)
        per_token = per_token * mask
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
        return policy + self.mitigations.ssopd_weight * distill
