"""The research presets (issues 10 and 21), part of the preset table :data:`sdlens.train.presets.PRESETS`.

Each is ``sdpo-paper`` (the paper's SDPO: same data, batches, teacher, loss) with one mitigation switched on, so a
run differs from ``sdpo-paper`` in that mitigation only. ``MITIGATION_PRESETS`` lists them in the order of
docs/mitigations.md; ``sdlens experiment coverage --methods`` and ``sdlens lab run --mitigations`` take these names.
"""

from __future__ import annotations

from sdlens.train.preset_types import Preset, Setting

__all__ = ["FOLLOWUP_PRESETS", "MITIGATION_PRESETS", "RESEARCH_PRESETS"]

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

# The literature's follow-up methods (issue 21, docs/mitigations.md section 5): each from its paper, its settings
# where the paper (or its code) gives them; "sdlens:" marks a value the sources leave open.
_FOLLOWUPS = [
    Preset(
        "purified-opsd",
        "sdpo",
        "Purified OPSD: JSD to the PMI target log P_0 + c tanh(D / c) / beta, D = log pi(q, r) - log pi(r), three "
        "frozen-base passes; the reference r is the successful sibling.",
        {
            "purified": Setting(True, "arXiv 2607.02234 Eq. 13-18 (via a transcription; no code published)"),
            "purified_clip": Setting(10.0, "paper: c = 10"),
            "purified_beta": Setting(1.0, "paper: beta = 1"),
            "trl.distillation_alpha": Setting(0.5, "sdlens: the paper's JSD coefficient is not given; sdpo-paper's"),
            "trl.learning_rate": Setting(5e-6, "paper: 5e-6 (with LoRA r=64; sdlens trains all weights)"),
        },
        base="sdpo-paper",
    ),
    Preset(
        "rlcsd",
        "sdpo",
        "RLCSD: GRPO whose per-token advantage adds a bounded contrast of the teacher under a correct sibling vs up to "
        "4 wrong siblings (same template), sign-clamped; the code's tau 0.02, delta 0.02, eta 1, scale 0.5.",
        {
            "rlcsd": Setting(True, "arXiv 2606.11709, code compute_policy_loss_rlcsd"),
            "rlcsd_negatives": Setting(4, "code: K_max = 4"),
            "rlcsd_tau": Setting(0.02, "code: tau 0.02"),
            "rlcsd_scale": Setting(0.5, "code: beta 1.0 x lambda 0.5"),
            "rlcsd_threshold": Setting(0.02, "code: delta 0.02"),
            "rlcsd_eta": Setting(1.0, "code: eta 1.0"),
            "rlcsd_clip": Setting(2.0, "code: r clip 2.0"),
            "trl.teacher_model_kind": Setting("ema", "code: a snapshot of the policy ..."),
            "trl.teacher_update_rate": Setting(1.0, "... copied whole (an EMA of rate 1) ..."),
            "trl.teacher_sync_steps": Setting(10, "... every 10 optimizer updates"),
            "trl.distillation_weight": Setting(0.0, "no distillation term: the contrast enters the advantage"),
            "trl.learning_rate": Setting(1e-6, "code: lr 1e-6"),
            "trl.scale_rewards": Setting("group", "code: verl GRPO advantage, std-normalised per group"),
            "trl.loss_type": Setting("dapo", "code: token mean over each set's tokens"),
            "trl.epsilon": Setting(0.2, "code: clip 0.2"),
            "trl.epsilon_high": Setting(0.2, "code: clip 0.2 (symmetric)"),
        },
        base="sdpo-paper",
    ),
    Preset(
        "pw-opsd",
        "sdpo",
        "PW-OPSD: forward KL over the full vocabulary at temperature 1.1, each token weighted by its position "
        "(0.25 + 0.75 sigmoid((f - 0.3) / 0.1)); frozen initial teacher.",
        {
            "position_weights": Setting(True, "arXiv 2605.21606, code: moderate schedule"),
            "position_weight_min": Setting(0.25, "code: w_min 0.25"),
            "position_weight_center": Setting(0.30, "code: tau 0.30"),
            "position_weight_width": Setting(0.10, "code: s 0.10"),
            "trl.distillation_alpha": Setting(0.0, "code: forward KL(p_T || p_S)"),
            "trl.distillation_mode": Setting("full_logits", "code: full vocabulary (top_k_loss 0)"),
            "trl.temperature": Setting(1.1, "code: rollout and distillation temperature 1.1"),
            "trl.top_p": Setting(0.95, "code: rollout top-p 0.95"),
            "trl.top_k": Setting(20, "code: rollout top-k 20"),
            "trl.learning_rate": Setting(5e-6, "code: 5e-6 (with LoRA r=64; sdlens trains all weights)"),
            "trl.max_grad_norm": Setting(0.1, "code: max-grad-norm 0.1"),
        },
        base="sdpo-paper",
    ),
    Preset(
        "egrsd",
        "sdpo",
        "EGRSD-style (sdlens' reading of an abstract): GRPO with A x ((1 - 0.5) + 0.5 x RLSD ratio weight x teacher-"
        "entropy gate), gate = 0.1 + 0.9 exp(-H); grpo-paper's learning rate and clipping.",
        {
            "egrsd": Setting(True, "arXiv 2605.13255 (abstract only): direction x ratio x entropy gate"),
            "egrsd_lambda": Setting(0.5, "sdlens: RLSD's lambda 0.5 (RLCSD code), not decayed"),
            "egrsd_ratio_clip": Setting(0.2, "sdlens: RLSD's weight clip [0.8, 1.2] (RLCSD code)"),
            "egrsd_gate_min": Setting(0.1, "sdlens: the abstract says only 'a nonzero floor'"),
            "egrsd_entropy_scale": Setting(1.0, "sdlens: gate exp(-H / 1 nat)"),
            "egrsd_lookahead": Setting(0, "sdlens: plain EGRSD (CL-EGRSD: egrsd_lookahead=k)"),
            "trl.distillation_weight": Setting(0.0, "no distillation term: the teacher enters the advantage"),
            "trl.learning_rate": Setting(1e-6, "grpo-paper LR: EGRSD is a GRPO variant"),
            **_GRPO_POLICY,
        },
        base="sdpo-paper",
    ),
    Preset(
        "ssopd",
        "sdpo",
        "SSOPD-style (sdlens' reading of an abstract): GRPO + distillation of the current policy reading the "
        "group's shortest correct rollout into its longest wrong one, weighted 4p(1-p) by the group's pass rate.",
        {
            "ssopd": Setting(True, "arXiv 2605.17497 (abstract only)"),
            "ssopd_weight": Setting(1.0, "sdlens: mu = 1 (the abstract gives no mixing weight)"),
            "trl.teacher_model_kind": Setting("live", "a stop-gradient copy of the same model (secondary listing)"),
            "trl.distillation_weight": Setting(1.0, "kept at 1 for the chunked path; the ssopd loss adds GRPO"),
            "trl.learning_rate": Setting(1e-6, "sdlens: grpo-paper LR (SSOPD is auxiliary to GRPO)"),
            **_GRPO_POLICY,
        },
        base="sdpo-paper",
    ),
]
_MITIGATIONS.extend(_FOLLOWUPS)

MITIGATION_PRESETS: tuple[str, ...] = tuple(p.name for p in _MITIGATIONS)
FOLLOWUP_PRESETS: tuple[str, ...] = tuple(p.name for p in _FOLLOWUPS)

RESEARCH_PRESETS: tuple[Preset, ...] = tuple(_MITIGATIONS)
