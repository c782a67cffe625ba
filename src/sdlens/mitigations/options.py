"""Which mitigations a :class:`~sdlens.train.config.TrainConfig` switches on, and the checks on their fields.

The fields themselves live in ``TrainConfig`` (one place for their help text); this module only reads them. It
imports neither torch nor TRL, so config resolution stays cheap.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "FOLLOWUPS",
    "RICHNESS",
    "TRIGGER_STATES",
    "active_mitigations",
    "needs_mitigation_trainer",
    "validate_mitigations",
]

# The context-richness ladder, least to most informative about the demonstration's content (see context.py).
RICHNESS = ("answer-only", "s-nothink", "s", "peer")
TRIGGER_STATES = ("warning", "suppressing")
# The literature's follow-up methods (issue 21): the boolean switches, in the order of docs/mitigations.md.
FOLLOWUPS = ("purified", "rlcsd", "position_weights", "egrsd", "ssopd")
# Those that replace the loss, and AntiSD: at most one per run.
_OWN_LOSS = ("antisd", "purified", "rlcsd", "egrsd", "ssopd")


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
    out.extend(name.replace("_", "-") for name in FOLLOWUPS if getattr(cfg, name))
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
    _validate_followups(cfg, loss_change)
    if not 0.0 < cfg.antisd_gate_ratio <= 1.0:
        raise ValueError(f"antisd_gate_ratio must be in (0, 1], got {cfg.antisd_gate_ratio}")
    if cfg.antisd_warmup_steps < 1:
        raise ValueError(f"antisd_warmup_steps must be >= 1, got {cfg.antisd_warmup_steps}")


def _validate_followups(cfg: Any, hedge_change: bool) -> None:
    """The follow-up methods' checks (docs/mitigations.md section 5)."""
    own = [name for name in _OWN_LOSS if getattr(cfg, name)]
    if len(own) > 1:
        raise ValueError(f"{' and '.join(own)} each replace the loss: switch on one of them")
    if own and own[0] != "antisd" and (hedge_change or cfg.mix_on_suppression is not None):
        raise ValueError(f"{own[0]} replaces the loss: drop hedge_* / other_clip / mix_on_suppression")
    if cfg.position_weights and own:
        raise ValueError(f"position_weights act on the distillation loss, which {own[0]} replaces")
    if cfg.position_weights and cfg.mix_on_suppression is not None:
        raise ValueError("position_weights cannot be combined with mix_on_suppression (TRL's loss has no hook)")
    builder = [name for name in ("purified", "rlcsd", "ssopd") if getattr(cfg, name)]
    if builder:
        if cfg.teacher_context != "sdlens":
            raise ValueError(f"{builder[0]} needs teacher_context: sdlens (its teacher prompts extend sdlens' builder)")
        if cfg.teacher_richness is not None:
            raise ValueError(f"{builder[0]} builds its own teacher contexts: drop teacher_richness")
    needs_chunked = [n for n in ("purified", "position_weights", "ssopd") if getattr(cfg, n)]
    if needs_chunked and not cfg.chunked_distillation:
        raise ValueError(f"{needs_chunked[0]} works on hidden states (the chunked loss): chunked_distillation: true")
    if needs_chunked and float(cfg.trl.get("distillation_weight", 1.0)) != 1.0:
        raise ValueError(f"{needs_chunked[0]} needs distillation_weight 1.0 (it sets its own loss)")
    positive = {
        "purified_clip": cfg.purified_clip,
        "purified_beta": cfg.purified_beta,
        "rlcsd_tau": cfg.rlcsd_tau,
        "rlcsd_clip": cfg.rlcsd_clip,
        "position_weight_width": cfg.position_weight_width,
        "egrsd_entropy_scale": cfg.egrsd_entropy_scale,
    }
    for name, value in positive.items():
        if not value > 0:
            raise ValueError(f"{name} must be > 0, got {value}")
    nonneg = {
        "rlcsd_scale": cfg.rlcsd_scale,
        "rlcsd_threshold": cfg.rlcsd_threshold,
        "rlcsd_eta": cfg.rlcsd_eta,
        "ssopd_weight": cfg.ssopd_weight,
        "egrsd_lookahead": cfg.egrsd_lookahead,
    }
    for name, value in nonneg.items():
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    if cfg.rlcsd_negatives < 1:
        raise ValueError(f"rlcsd_negatives must be >= 1, got {cfg.rlcsd_negatives}")
    unit = {
        "position_weight_min": cfg.position_weight_min,
        "egrsd_lambda": cfg.egrsd_lambda,
        "egrsd_gate_min": cfg.egrsd_gate_min,
    }
    for name, value in unit.items():
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value}")
    if not 0.0 <= cfg.egrsd_ratio_clip < 1.0:
        raise ValueError(f"egrsd_ratio_clip must be in [0, 1), got {cfg.egrsd_ratio_clip}")
