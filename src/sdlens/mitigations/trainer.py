"""The SDPO trainer with the mitigations switched on by a :class:`~sdlens.train.config.TrainConfig`.

:func:`mitigation_trainer_class` subclasses the runner's SDPO trainer (``ChunkedSDPOTrainer`` or TRL's
``SDPOTrainer``, with the runner's distributed fix) and overrides only what each mitigation needs:

- ``_prepare_training_batch``: keeps the rows' ground-truth answers for the ``answer-only`` teacher rung.
- ``distillation_token_weights`` / ``transform_per_token_loss`` (the chunked loss's hooks): hedge-aware weighting
  and per-class clipping (:mod:`sdlens.mitigations.hedge`).
- ``compute_loss``: AntiSD (:mod:`sdlens.mitigations.antisd`) replaces the loss; after the suppression detector
  fires (``mix_on_suppression``), TRL's policy + distillation blend with the new weight.

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
from sdlens.mitigations.hedge import class_clip, hedge_weights

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
        return super()._prepare_training_batch(inputs)

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
        if m is None or m.hedge_weight == 1.0:
            return super().distillation_token_weights(completion_ids, loss_mask)
        hedge = self.hedge_mask(completion_ids, loss_mask)
        mode = "train" if self.model.training else "eval"
        share = float(hedge.sum()) / max(1.0, float(loss_mask.sum()))
        self._metrics[mode]["mitigation/hedge_token_fraction"].append(share)
        return hedge_weights(hedge, m.hedge_weight)

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
        if m is not None and m.hedge_aware and not hasattr(distillation_logits, "student_hidden"):
            raise RuntimeError(
                "hedge-aware distillation (hedge_weight / hedge_clip / other_clip) needs sdlens' chunked loss, but "
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
        if m is None or (not m.antisd and self.mix_weight is None):
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if return_outputs:
            raise ValueError("The SDPOTrainer does not support returning outputs")
        if m.antisd:
            loss = self._antisd_loss(model, inputs)
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

    def _teacher_logps_entropy(self, inputs) -> tuple[torch.Tensor, torch.Tensor]:
        """The teacher's log-prob of each sampled token and its next-token entropy, ``[B, T]`` each, no grad."""
        ids = inputs["completion_ids"]
        keep = ids.size(1)
        hidden_ok = getattr(self, "chunked_distillation", False) and hasattr(self, "_forward_hidden")
        if hidden_ok and self._model_blocker(self.teacher_model, inputs) is not None:
            hidden_ok = False
        with torch.no_grad(), self._get_teacher_context_for_self_distillation():
            if hidden_ok:
                hidden, weight = self._forward_hidden(
                    self.teacher_model, inputs["teacher_input_ids"], inputs["teacher_attention_mask"], keep
                )
                return logps_entropy_from_hidden(
                    hidden,
                    weight,
                    ids,
                    temperature=self.temperature,
                    chunk_size=self.distillation_chunk_size,
                    matmul_dtype=self._matmul_dtype(),
                )
            logits = self._forward_logits(
                self.teacher_model, inputs["teacher_input_ids"], inputs["teacher_attention_mask"], keep
            )
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
