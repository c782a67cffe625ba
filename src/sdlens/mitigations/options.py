"""The SDPO trainer's research options (:class:`SDPOResearchConfig`), which of them a config switches on, and the
checks on their values.

Kept apart from the trainer's core config (:class:`sdlens.train.sdpo_trainer.SdlensSDPOConfig`: TRL's fields and
the chunked loss), in the spirit of TRL's ``experimental/``: every field here is a published or proposed remedy for
epistemic suppression, off by default. :class:`sdlens.train.config.TrainConfig` has these fields too (it subclasses
this dataclass), so a YAML file or ``--set`` sets them like any other. This module imports neither torch nor TRL,
so config resolution stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from sdlens.epistemic.lexicon import load_lexicon
from sdlens.fields import documented

__all__ = [
    "FOLLOWUPS",
    "RICHNESS",
    "TRIGGER_STATES",
    "SDPOResearchConfig",
    "active_mitigations",
    "needs_state",
    "validate_mitigations",
]

# The context-richness ladder, least to most informative about the demonstration's content (see context.py).
RICHNESS = ("answer-only", "s-nothink", "s", "peer")
TRIGGER_STATES = ("warning", "suppressing")
# The literature's follow-up methods (issue 21): the boolean switches, in the order of docs/mitigations.md.
FOLLOWUPS = ("purified", "rlcsd", "position_weights", "egrsd", "ssopd")
# Those that replace the loss, and AntiSD: at most one per run.
_OWN_LOSS = ("antisd", "purified", "rlcsd", "egrsd", "ssopd")


@dataclass
class SDPOResearchConfig:
    """The research options of :class:`sdlens.train.sdpo_trainer.SdlensSDPOTrainer`; the defaults change nothing."""

    # the paper-era mitigations (issue 10, docs/mitigations.md sections 1-4)
    teacher_richness: str | None = documented(
        None, "SDPO teacher context: answer-only, s-nothink, s (paper), peer (any other rollout); None: TRL fields."
    )
    hedge_weight: float = documented(1.0, "SDPO: distillation weight of hedge-word positions (0: excluded, 1: off).")
    hedge_lexicon: str = documented(
        "words", "Lexicon whose words are hedge positions (paper, words, companion, a TOML)."
    )
    hedge_clip: float | None = documented(None, "SDPO: cap on the per-token distillation loss at hedge positions.")
    other_clip: float | None = documented(None, "SDPO: cap on the per-token distillation loss at all other positions.")
    mix_on_suppression: float | None = documented(
        None, "SDPO: switch distillation_weight to this (GRPO mixing) once the suppression detector fires."
    )
    mix_trigger: str = documented("suppressing", "Detector state that switches the mixing on: warning or suppressing.")
    mix_detector: str | None = documented(
        None,
        "The signal that switches the mixing on, as package.module:function: called with the trainer, it returns a "
        "no-argument callable giving ok / warning / suppressing. None: the epistemic monitor's suppression detector.",
    )
    antisd: bool = documented(
        False, "SDPO trainer: AntiSD, GRPO with the advantage A - lambda * phi(u_t) (no distillation)."
    )
    antisd_lambda: float = documented(1.0, "AntiSD: weight of the per-token term phi(u) = (softplus(u) - log 2) / 2.")
    antisd_gate: bool = documented(
        True, "AntiSD: entropy gate (off below antisd_gate_ratio x H_warm, on again at H_warm)."
    )
    antisd_warmup_steps: int = documented(10, "AntiSD: optimizer steps whose teacher entropy calibrates H_warm.")
    antisd_gate_ratio: float = documented(0.93, "AntiSD: the gate closes below this fraction of H_warm.")
    # the literature's follow-up methods (issue 21, docs/mitigations.md section 5)
    purified: bool = documented(
        False, "SDPO: Purified OPSD, JSD to the PMI target of (question + ref, ref only, question)."
    )
    purified_clip: float = documented(10.0, "Purified OPSD: soft clip c of the centred log-ratio, c * tanh(D / c).")
    purified_beta: float = documented(1.0, "Purified OPSD: beta of the target log P_0 + D / beta.")
    rlcsd: bool = documented(
        False, "SDPO trainer: RLCSD, GRPO with a correct-hint vs wrong-hints contrast on the advantage."
    )
    rlcsd_negatives: int = documented(4, "RLCSD: at most this many wrong siblings as negative hints (K_max).")
    rlcsd_tau: float = documented(0.02, "RLCSD: tanh temperature of the contrast.")
    rlcsd_scale: float = documented(0.5, "RLCSD: beta * lambda, the contrast term's scale.")
    rlcsd_threshold: float = documented(0.02, "RLCSD: tokens with |r_t| above this get the shaped advantage (delta).")
    rlcsd_eta: float = documented(1.0, "RLCSD: weight of the selected tokens' loss.")
    rlcsd_clip: float = documented(2.0, "RLCSD: clip of r_t.")
    position_weights: bool = documented(
        False, "SDPO: PW-OPSD position weights on the distillation loss (chunked loss)."
    )
    position_weight_min: float = documented(0.25, "PW-OPSD: weight at the start of a response (w_min).")
    position_weight_center: float = documented(0.30, "PW-OPSD: relative position of the sigmoid's midpoint (tau).")
    position_weight_width: float = documented(0.10, "PW-OPSD: sigmoid width (s).")
    egrsd: bool = documented(
        False, "SDPO trainer: EGRSD-style GRPO, advantage x RLSD ratio weight x teacher-entropy gate."
    )
    egrsd_lambda: float = documented(0.5, "EGRSD: share of the advantage that is re-weighted per token.")
    egrsd_ratio_clip: float = documented(0.2, "EGRSD: the likelihood-ratio weight is clipped to [1 - c, 1 + c].")
    egrsd_gate_min: float = documented(0.1, "EGRSD: floor of the entropy gate.")
    egrsd_entropy_scale: float = documented(1.0, "EGRSD: gate = floor + (1 - floor) * exp(-H / scale), H in nats.")
    egrsd_lookahead: int = documented(0, "EGRSD: CL-EGRSD look-ahead k (0: off): H -> min(H, mean of the next k).")
    ssopd: bool = documented(False, "SDPO trainer: SSOPD, GRPO + shortest-correct-teaches-longest-wrong distillation.")
    ssopd_weight: float = documented(1.0, "SSOPD: weight of the auxiliary distillation loss (mu).")

    @classmethod
    def from_config(cls, cfg: Any) -> SDPOResearchConfig:
        """These options as set on ``cfg`` (any object with the same attribute names, e.g. a ``TrainConfig``)."""
        return cls(**{f.name: getattr(cfg, f.name) for f in fields(cls)})

    @property
    def hedge_aware(self) -> bool:
        """Whether the per-token distillation loss is re-weighted or clipped by token class."""
        return self.hedge_weight != 1.0 or self.hedge_clip is not None or self.other_clip is not None


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


def needs_state(cfg: Any) -> bool:
    """Whether ``cfg``'s research options carry state across steps (the GRPO-mix switch, AntiSD's gate), saved with
    every checkpoint (:mod:`sdlens.mitigations.state`)."""
    return cfg.mix_on_suppression is not None or bool(cfg.antisd)


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
    loss_change = cfg.hedge_aware
    if loss_change:
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
