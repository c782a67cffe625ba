"""Which mitigations a :class:`~sdlens.train.config.TrainConfig` switches on, and the checks on their fields.

The fields themselves live in ``TrainConfig`` (one place for their help text); this module only reads them. It
imports neither torch nor TRL, so config resolution stays cheap.
"""

from __future__ import annotations

from typing import Any

__all__ = ["RICHNESS", "TRIGGER_STATES", "active_mitigations", "needs_mitigation_trainer", "validate_mitigations"]

# The context-richness ladder, least to most informative about the demonstration's content (see context.py).
RICHNESS = ("answer-only", "s-nothink", "s", "peer")
TRIGGER_STATES = ("warning", "suppressing")


def active_mitigations(cfg: Any) -> list[str]:
    """Names of the mitigations ``cfg`` turns on (empty: the plain trainer)."""
    out = []
    if cfg.teacher_richness is not None:
        out.append(f"teacher-{cfg.teacher_richness}")
    if cfg.hedge_weight != 1.0:
        out.append("hedge-weight")
    if cfg.hedge_clip is not None or cfg.other_clip is not None:
        out.append("class-clip")
    if cfg.mix_on_suppression is not None:
        out.append("auto-mix")
    if cfg.antisd:
        out.append("antisd")
    return out


def needs_mitigation_trainer(cfg: Any) -> bool:
    """Whether the SDPO run needs :func:`sdlens.mitigations.trainer.mitigation_trainer_class` (any mitigation on)."""
    return cfg.algo == "sdpo" and bool(active_mitigations(cfg))


def validate_mitigations(cfg: Any) -> None:
    """Raise ``ValueError`` (one line, naming the field) for values or combinations that cannot run."""
    on = active_mitigations(cfg)
    if on and cfg.algo != "sdpo":
        raise ValueError(f"{', '.join(on)}: mitigations are options of the SDPO trainer (algo sdpo), not {cfg.algo}")
    if cfg.teacher_richness is not None:
        if cfg.teacher_richness not in RICHNESS:
            raise ValueError(f"teacher_richness must be one of {', '.join(RICHNESS)}, got {cfg.teacher_richness!r}")
        if cfg.teacher_context != "sdlens":
            raise ValueError("teacher_richness needs teacher_context: sdlens (the ladder extends sdlens' builder)")
    if not 0.0 <= cfg.hedge_weight <= 1.0:
        raise ValueError(f"hedge_weight must be in [0, 1], got {cfg.hedge_weight}")
    for name in ("hedge_clip", "other_clip"):
        value = getattr(cfg, name)
        if value is not None and not value > 0:
            raise ValueError(f"{name} must be > 0 (or null), got {value}")
    loss_change = cfg.hedge_weight != 1.0 or cfg.hedge_clip is not None or cfg.other_clip is not None
    if loss_change:
        from sdlens.epistemic.lexicon import load_lexicon

        load_lexicon(cfg.hedge_lexicon)  # a missing or bad lexicon file fails here, before any model loads
    if loss_change and not cfg.chunked_distillation:
        raise ValueError("hedge_weight / hedge_clip / other_clip act on the chunked loss: chunked_distillation: true")
    if loss_change and float(cfg.trl.get("distillation_weight", 1.0)) != 1.0:
        raise ValueError(
            "hedge_weight / hedge_clip / other_clip need distillation_weight 1.0: GRPO mixing runs TRL's "
            "full-logit loss, which has no per-token hook"
        )
    if cfg.mix_on_suppression is not None:
        if not 0.0 <= cfg.mix_on_suppression < 1.0:
            raise ValueError(f"mix_on_suppression must be in [0, 1), got {cfg.mix_on_suppression}")
        if loss_change:
            raise ValueError("mix_on_suppression cannot be combined with hedge_weight / hedge_clip / other_clip")
        if cfg.mix_detector is None and not getattr(cfg, "epistemic_monitor", True):
            raise ValueError("mix_on_suppression reads the suppression detector: epistemic_monitor must be on")
    if cfg.mix_trigger not in TRIGGER_STATES:
        raise ValueError(f"mix_trigger must be one of {', '.join(TRIGGER_STATES)}, got {cfg.mix_trigger!r}")
    if cfg.antisd:
        if loss_change or cfg.mix_on_suppression is not None:
            raise ValueError("antisd replaces the distillation loss: drop hedge_* / other_clip / mix_on_suppression")
        if cfg.antisd_lambda < 0:
            raise ValueError(f"antisd_lambda must be >= 0, got {cfg.antisd_lambda}")
    if not 0.0 < cfg.antisd_gate_ratio <= 1.0:
        raise ValueError(f"antisd_gate_ratio must be in (0, 1], got {cfg.antisd_gate_ratio}")
    if cfg.antisd_warmup_steps < 1:
        raise ValueError(f"antisd_warmup_steps must be >= 1, got {cfg.antisd_warmup_steps}")
