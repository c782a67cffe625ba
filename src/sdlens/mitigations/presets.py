"""The mitigation presets (issue 10), registered into :data:`sdlens.train.presets.PRESETS` on import.

Each is ``sdpo-paper`` (the paper's SDPO: same data, batches, teacher, loss) with one mitigation switched on, so a
run differs from ``sdpo-paper`` in that mitigation only. ``MITIGATION_PRESETS`` lists them in the order of
docs/mitigations.md; ``sdlens experiment coverage --methods`` and ``sdlens lab run --mitigations`` take these names.
"""

from __future__ import annotations

from sdlens.train.presets import PRESETS, Preset, Setting

__all__ = ["MITIGATION_PRESETS", "register"]

# The policy-loss half of a GRPO mix uses the grpo-paper settings that SDPOConfig has (it has no dual-clip delta).
_GRPO_POLICY = {
    "trl.scale_rewards": Setting("none", "grpo-paper: A = r - mean (Dr.GRPO)"),
    "trl.loss_type": Setting("dapo", "grpo-paper: token-mean"),
    "trl.epsilon": Setting(0.2, "grpo-paper: clip 0.2"),
    "trl.epsilon_high": Setting(0.28, "grpo-paper: clip-higher 0.28"),
}

_MITIGATIONS = [
    Preset(
        "sdpo-answer-only",
        "sdpo",
        "Context ladder, lowest rung: the teacher reads only 'The correct final answer is X.' (same rollouts get a "
        "teacher as in sdpo-paper).",
        {"teacher_richness": Setting("answer-only", "issue 10 part 1: least informative teacher context")},
        base="sdpo-paper",
    ),
    Preset(
        "sdpo-peer",
        "sdpo",
        "Context ladder: the teacher reads another rollout of the group, whatever its reward, labelled as possibly "
        "wrong; every rollout gets a teacher.",
        {"teacher_richness": Setting("peer", "issue 10 part 1: a peer's rollout as context")},
        base="sdpo-paper",
    ),
    Preset(
        "sdpo-hedge-mask",
        "sdpo",
        "Hedge-aware distillation: positions of hedge words (words lexicon) are excluded from the distillation loss.",
        {
            "hedge_weight": Setting(0.0, "issue 10 part 2: hedge positions excluded"),
            "hedge_lexicon": Setting("words", "whole words of the paper's 10 (plus elongations)"),
        },
        base="sdpo-paper",
    ),
    Preset(
        "sdpo-hedge-clip",
        "sdpo",
        "Hedge-aware distillation by clipping: the per-token loss is capped at 0.05 at hedge positions, untouched "
        "elsewhere.",
        {
            "hedge_clip": Setting(0.05, "issue 10 part 2; PW-OPSD's jsd_token_clip 0.05 (docs/paper.md 12.3)"),
            "hedge_lexicon": Setting("words", "whole words of the paper's 10 (plus elongations)"),
        },
        base="sdpo-paper",
    ),
    Preset(
        "sdpo-grpo-mix",
        "sdpo",
        "GRPO mixing: loss = 0.5 x GRPO policy loss + 0.5 x distillation (TRL's distillation_weight; full-logit path).",
        {"trl.distillation_weight": Setting(0.5, "issue 10 part 3: TRL's blend, equal halves"), **_GRPO_POLICY},
        base="sdpo-paper",
    ),
    Preset(
        "sdpo-grpo-mix-auto",
        "sdpo",
        "GRPO mixing switched on by the suppression detector: pure distillation until hedging is flagged as "
        "suppressed, then the 0.5 / 0.5 blend for the rest of the run.",
        {
            "mix_on_suppression": Setting(0.5, "issue 10 part 3: the blend once the detector fires"),
            "mix_trigger": Setting("suppressing", "the detector's strongest state"),
            **_GRPO_POLICY,
        },
        base="sdpo-paper",
    ),
    Preset(
        "antisd",
        "sdpo",
        "AntiSD-style sign flip: GRPO with per-token advantage A - phi(u_t), u_t the teacher-student PMI of the "
        "sampled token, entropy gate; grpo-paper's learning rate and clipping.",
        {
            "antisd": Setting(True, "issue 10 part 4; docs/paper.md 12.2"),
            "antisd_lambda": Setting(1.0, "sdlens default (docs/paper.md 12.2 gives no value)"),
            "antisd_gate": Setting(True, "docs/paper.md 12.2 entropy gate"),
            "antisd_gate_ratio": Setting(0.93, "docs/paper.md 12.2 tau_down = 0.93 H_warm"),
            "antisd_warmup_steps": Setting(10, "sdlens default: H_warm from the first 10 optimizer steps"),
            "trl.learning_rate": Setting(1e-6, "grpo-paper LR: AntiSD is a GRPO variant"),
            "trl.distillation_weight": Setting(0.0, "no distillation term: the PMI enters the advantage"),
            **_GRPO_POLICY,
        },
        base="sdpo-paper",
    ),
]

MITIGATION_PRESETS: tuple[str, ...] = tuple(p.name for p in _MITIGATIONS)


def register() -> None:
    """Add the mitigation presets to the registry (idempotent)."""
    for p in _MITIGATIONS:
        PRESETS.setdefault(p.name, p)


register()
