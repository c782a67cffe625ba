"""sdlens.mitigations: each loss change against its closed form on hand-built tensors, the context ladder's
messages, the presets and the option checks (no training here: tests/test_mitigations_runs.py runs the presets)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

from sdlens.losses import generalized_jsd, reduce_per_token, self_distillation_per_token  # noqa: E402
from sdlens.losses.distill import logps_entropy_from_logits, token_logprobs  # noqa: E402
from sdlens.mitigations import MITIGATION_PRESETS, RICHNESS  # noqa: E402
from sdlens.mitigations.antisd import EntropyGate, antisd_advantages, antisd_phi  # noqa: E402
from sdlens.mitigations.context import ladder_teacher_messages, peer_demonstrations  # noqa: E402
from sdlens.mitigations.hedge import class_clip, hedge_weights  # noqa: E402
from sdlens.mitigations.mixing import fires  # noqa: E402
from sdlens.mitigations.presets import FOLLOWUP_PRESETS  # noqa: E402
from sdlens.train.config import resolve_config  # noqa: E402
from sdlens.train.presets import PRESETS, preset_values  # noqa: E402
from sdlens.train.teacher import (  # noqa: E402
    PAPER_FEEDBACK_TEMPLATE,
    PAPER_REPROMPT_TEMPLATE,
    PAPER_SOLUTION_TEMPLATE,
)

# ---------------------------------------------------------------- hedge-aware distillation


def test_hedge_weights_and_class_clip_closed_form():
    hedge = torch.tensor([[True, False, True], [False, False, True]])
    assert hedge_weights(hedge, 1.0) is None
    assert hedge_weights(hedge, 0.25).tolist() == [[0.25, 1.0, 0.25], [1.0, 1.0, 0.25]]
    loss = torch.tensor([[0.5, 0.5, 0.01], [3.0, 0.2, 0.7]], requires_grad=True)
    out = class_clip(loss, hedge, hedge_clip=0.1, other_clip=1.0)
    assert torch.allclose(out, torch.tensor([[0.1, 0.5, 0.01], [1.0, 0.2, 0.1]]))
    (g,) = torch.autograd.grad(out.sum(), loss)
    # a clipped position passes no gradient, an unclipped one passes it whole
    assert g.tolist() == [[0.0, 1.0, 1.0], [0.0, 1.0, 0.0]]
    assert class_clip(loss, hedge) is loss
    only_hedge = class_clip(loss, hedge, hedge_clip=0.1)
    assert only_hedge[1, 0].item() == pytest.approx(3.0)  # other positions unclipped without other_clip


def test_hedge_mask_in_the_chunked_loss_matches_the_closed_form():
    g = torch.Generator().manual_seed(3)
    B, T, H, V = 2, 6, 8, 40
    h = torch.randn(B, T, H, generator=g, requires_grad=True)
    w = torch.randn(V, H, generator=g) / H**0.5
    ht = torch.randn(B, T, H, generator=g)
    mask = torch.ones(B, T)
    mask[1, 4:] = 0.0  # padding
    hedge = torch.zeros(B, T, dtype=torch.bool)
    hedge[0, 1] = hedge[0, 2] = hedge[1, 3] = True
    out = self_distillation_per_token(
        h, w, ht, w, mask=mask, topk=None, alpha=0.5, token_weights=hedge_weights(hedge, 0.0), chunk_size=5
    )
    loss = reduce_per_token(out.per_token_loss, mask, "sequence_mean")
    # closed form: the generalized JSD on full softmaxes, zero at hedge positions, mean over each row's tokens
    d = generalized_jsd(torch.log_softmax(h.detach() @ w.T, -1), torch.log_softmax(ht @ w.T, -1), 0.5)
    keep = mask * (~hedge).float()
    expected = ((d * keep).sum(1) / mask.sum(1)).mean()
    assert loss.item() == pytest.approx(expected.item(), abs=1e-6)
    assert torch.all(out.per_token_loss[hedge] == 0)
    (gh,) = torch.autograd.grad(loss, h)
    assert torch.all(gh[hedge] == 0) and torch.all(gh[1, 4:] == 0)
    assert torch.all(gh[keep.bool()].abs().sum(-1) > 0)


# ---------------------------------------------------------------- AntiSD


def test_antisd_phi_closed_form():
    u = torch.tensor([-40.0, -2.0, 0.0, 1.5, 30.0])
    want = [0.5 * (math.log1p(math.exp(x)) - math.log(2.0)) for x in (-40.0, -2.0, 0.0, 1.5)]
    want.append(0.5 * (30.0 + math.log1p(math.exp(-30.0)) - math.log(2.0)))
    assert antisd_phi(u).tolist() == pytest.approx(want, abs=1e-6)
    assert antisd_phi(torch.tensor(0.0)).item() == 0.0
    # bounded on the deliberation side (u -> -inf): -log(2)/2; linear, slope 1/2, on the shortcut side
    assert antisd_phi(torch.tensor(-1e4)).item() == pytest.approx(-math.log(2.0) / 2)
    assert (antisd_phi(torch.tensor(40.0)) - antisd_phi(torch.tensor(20.0))).item() == pytest.approx(10.0)


def test_antisd_advantages_closed_form():
    seq = torch.tensor([1.0, -0.5])
    u = torch.tensor([[-3.0, 0.0, 2.0], [1.0, -1.0, 5.0]], requires_grad=True)
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    adv = antisd_advantages(seq, u, mask, lam=2.0)
    phi = lambda x: 0.5 * (math.log1p(math.exp(x)) - math.log(2.0))  # noqa: E731
    want = [
        [1.0 - 2 * phi(-3.0), 1.0, 1.0 - 2 * phi(2.0)],
        [-0.5 - 2 * phi(1.0), -0.5 - 2 * phi(-1.0), -0.5],  # the last token has no teacher
    ]
    assert torch.allclose(adv, torch.tensor(want), atol=1e-6)
    assert not adv.requires_grad  # stop-gradient on phi
    # deliberation tokens (u < 0) gain advantage, shortcut tokens (u > 0) lose it
    assert adv[0, 0] > seq[0] > adv[0, 2]
    closed = antisd_advantages(seq, u, mask, lam=2.0, active=False)
    assert closed.tolist() == [[1.0, 1.0, 1.0], [-0.5, -0.5, -0.5]]
    assert antisd_advantages(seq.unsqueeze(1), u, mask, lam=0.0).tolist() == closed.tolist()


def test_entropy_gate_warmup_and_hysteresis():
    gate = EntropyGate(warmup_steps=2, ratio=0.93)
    # warm-up: always on, H_warm = mean of the warm-up entropies (several micro-batches per step count alike)
    assert gate.update(0, 2.0) and gate.update(1, 4.0) and gate.update(1, 3.0)
    assert gate.h_warm is None
    assert gate.update(2, 2.8) and gate.h_warm == pytest.approx(3.0)  # 2.8 >= 0.93 * 3 = 2.79: stays on
    assert not gate.update(3, 2.78)  # below 2.79: off
    assert not gate.update(4, 2.95)  # between the thresholds: stays off (hysteresis)
    assert not gate.update(5, None)  # no token with a teacher: unchanged
    assert gate.update(6, 3.0)  # back at H_warm: on
    assert gate.update(7, 2.85)  # between: stays on
    always = EntropyGate(warmup_steps=1, enabled=False)
    assert all(always.update(s, 0.01) for s in range(5)) and always.h_warm is None
    resumed = EntropyGate(warmup_steps=3)
    assert resumed.update(10, 1.0) and resumed.h_warm == 1.0  # calibrated from the first entropy past warm-up


def test_teacher_logps_and_entropy_chunked_equal_full_logits():
    g = torch.Generator().manual_seed(1)
    B, T, H, V = 2, 7, 8, 50
    hidden = torch.randn(B, T, H, generator=g)
    weight = torch.randn(V, H, generator=g)
    ids = torch.randint(0, V, (B, T), generator=g)
    logits = (hidden @ weight.T) / 0.7
    lp_full, ent_full = logps_entropy_from_logits(logits, ids)
    p = torch.softmax(logits, -1)
    assert torch.allclose(ent_full, -(p * p.log()).sum(-1), atol=1e-5)
    assert torch.allclose(lp_full, torch.log(p.gather(-1, ids[..., None]).squeeze(-1)), atol=1e-5)
    lp, ent = token_logprobs(hidden, weight, ids, temperature=0.7, chunk_size=3, entropy=True)
    assert torch.allclose(token_logprobs(hidden, weight, ids, temperature=0.7, chunk_size=3), lp, atol=1e-5)
    assert torch.allclose(lp, lp_full, atol=1e-5) and torch.allclose(ent, ent_full, atol=1e-5)
    # uniform logits: entropy log V, every token log(1/V)
    lp0, ent0 = token_logprobs(torch.zeros(1, 2, H), weight, torch.tensor([[0, 7]]), entropy=True)
    assert torch.allclose(ent0, torch.full((1, 2), math.log(V)))
    assert torch.allclose(lp0, torch.full((1, 2), -math.log(V)))


# ---------------------------------------------------------------- the context ladder

ARGS = SimpleNamespace(
    reprompt_template=PAPER_REPROMPT_TEMPLATE,
    solution_template=PAPER_SOLUTION_TEMPLATE,
    feedback_template=PAPER_FEEDBACK_TEMPLATE,
)
DEMO = "<think>\nhmm, 2+2 is 4, wait, yes\n</think>\n\nSo \\boxed{4}"
END = "\n\nCorrectly solve the original question."


def test_ladder_messages_for_each_rung():
    q = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"}]
    got = {rung: ladder_teacher_messages(rung, q, DEMO, "4", ARGS) for rung in RICHNESS}
    for msgs in got.values():
        assert msgs[0] == q[0] and msgs[1]["role"] == "user" and len(msgs) == 2
    assert got["answer-only"][1]["content"] == "What is 2+2?\nThe correct final answer is 4." + END
    assert got["s-nothink"][1]["content"] == "What is 2+2?\nCorrect solution:\n\nSo \\boxed{4}" + END
    assert got["s"][1]["content"] == f"What is 2+2?\nCorrect solution:\n\n{DEMO}" + END
    assert got["peer"][1]["content"] == (
        f"What is 2+2?\nAnother attempt at this question (it may be wrong):\n\n{DEMO}" + END
    )
    # the answer-only message carries nothing of the demonstration
    assert "boxed" not in got["answer-only"][1]["content"]
    # plain-text prompts stay plain text; no demonstration means no context
    assert ladder_teacher_messages("answer-only", "Q?", DEMO, "7", ARGS) == "Q?\nThe correct final answer is 7." + END
    assert ladder_teacher_messages("s", "Q?", None, "7", ARGS) == "Q?" + END
    with pytest.raises(ValueError, match="ground-truth answer"):
        ladder_teacher_messages("answer-only", "Q?", DEMO, None, ARGS)
    with pytest.raises(ValueError, match="teacher_richness must be one of"):
        ladder_teacher_messages("s-think", "Q?", DEMO, "4", ARGS)


def test_peer_demonstrations():
    assert peer_demonstrations(6, 3) == [1, 0, 0, 4, 3, 3]
    assert peer_demonstrations(2, 1) == [None, None]
    with pytest.raises(ValueError, match="groups of 4"):
        peer_demonstrations(6, 4)


# ---------------------------------------------------------------- presets and options


def test_presets_registered_and_differ_from_sdpo_paper_in_their_mitigation_only():
    base = preset_values("sdpo-paper")
    mitigation_keys = {
        "teacher_richness", "hedge_weight", "hedge_lexicon", "hedge_clip", "mix_on_suppression", "mix_trigger",
        "antisd", "antisd_lambda", "antisd_gate", "antisd_gate_ratio", "antisd_warmup_steps",
    }  # fmt: skip
    policy_keys = {"trl.scale_rewards", "trl.loss_type", "trl.epsilon", "trl.epsilon_high"}
    for name in MITIGATION_PRESETS:
        assert PRESETS[name].algo == "sdpo" and PRESETS[name].base == "sdpo-paper"
        if name in FOLLOWUP_PRESETS:  # the literature's methods bring their papers' settings (tested below)
            continue
        values = preset_values(name)
        changed = {k for k, v in values.items() if base.get(k, object()) != v}
        allowed = mitigation_keys | policy_keys | {"trl.distillation_weight", "trl.learning_rate"}
        assert changed and changed <= allowed, (name, changed - allowed)
        cfg = resolve_config("sdpo", preset=name)
        assert cfg.prompts_per_step == 256 and cfg.trl["distillation_alpha"] == 0.5  # the rest is sdpo-paper's
    assert resolve_config("sdpo", preset="sdpo-answer-only").teacher_richness == "answer-only"
    assert resolve_config("sdpo", preset="sdpo-hedge-mask").hedge_weight == 0.0
    mix = resolve_config("sdpo", preset="sdpo-grpo-mix")
    assert mix.trl["distillation_weight"] == 0.5 and mix.trl["scale_rewards"] == "none"
    anti = resolve_config("sdpo", preset="antisd")
    assert anti.antisd and anti.trl["learning_rate"] == 1e-6 and anti.antisd_gate_ratio == 0.93
    # a mitigation preset is a train preset: only for the sdpo trainer
    with pytest.raises(ValueError, match="is for sdpo"):
        resolve_config("grpo", preset="antisd")


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["teacher_richness=full"], "teacher_richness must be one of"),
        (["teacher_richness=peer", "teacher_context=trl"], "teacher_context: sdlens"),
        (["hedge_weight=1.5"], r"hedge_weight must be in \[0, 1\]"),
        (["hedge_clip=0"], "hedge_clip must be > 0"),
        (["hedge_weight=0", "distillation_weight=0.5"], "GRPO mixing runs TRL's full-logit loss"),
        (["hedge_weight=0", "chunked_distillation=false"], "chunked_distillation: true"),
        (["hedge_weight=0", "hedge_lexicon=/no/such.toml"], "no such lexicon file"),
        (["mix_on_suppression=1.0"], r"mix_on_suppression must be in \[0, 1\)"),
        (["mix_trigger=ok"], "mix_trigger must be one of"),
        (["antisd=true", "hedge_weight=0.5"], "antisd replaces the distillation loss"),
        (["antisd_gate_ratio=1.2"], "antisd_gate_ratio"),
    ],
)
def test_bad_mitigation_options_fail_with_one_line(sets, message):
    from sdlens.errors import InputError

    with pytest.raises((ValueError, InputError), match=message) as info:
        resolve_config("sdpo", preset="sdpo-paper", sets=sets)
    assert "\n" not in str(info.value)


def test_mitigations_are_sdpo_options():
    with pytest.raises(ValueError, match="options of the SDPO trainer"):
        resolve_config("grpo", preset="grpo-paper", sets=["hedge_weight=0"])
    cfg = resolve_config("sdpo", preset="sdpo-paper")
    from sdlens.mitigations.options import active_mitigations

    assert active_mitigations(cfg) == []


def test_detector_states_fire_at_or_above_the_trigger():
    assert [fires(s, "suppressing") for s in ("ok", "warning", "suppressing", None)] == [False, False, True, False]
    assert [fires(s, "warning") for s in ("ok", "warning", "suppressing")] == [False, True, True]


def test_docs_describe_every_preset_and_option():
    from dataclasses import fields
    from pathlib import Path

    from sdlens.train.config import TrainConfig

    doc = (Path(__file__).resolve().parents[1] / "docs" / "mitigations.md").read_text()
    for name in MITIGATION_PRESETS:
        assert f"`{name}`" in doc, name
    from sdlens.mitigations.options import SDPOResearchConfig

    options = [f.name for f in fields(SDPOResearchConfig)]
    assert set(options) <= {f.name for f in fields(TrainConfig)}
    for name in options:
        assert f"`{name}`" in doc, name
    assert "## Results on the model organism" in doc


# ---------------------------------------------------------------- issue 21: the literature's follow-up methods


def test_position_weights_hand_computed():
    from sdlens.mitigations.position import position_weights

    mask = torch.tensor([[1, 1, 1, 1, 0], [0, 1, 1, 0, 0]])
    w = position_weights(mask, 0.25, 0.30, 0.10)
    # row 0: T = 4, f = 0.125, 0.375, 0.625, 0.875; w = 0.25 + 0.75 sigmoid((f - 0.3) / 0.1)
    #   sigmoid(-1.75) = 0.148047, sigmoid(0.75) = 0.679179, sigmoid(3.25) = 0.962673, sigmoid(5.75) = 0.996827
    # row 1: the two valid tokens are its 1st and 2nd (T = 2): f = 0.25, 0.75; sigmoid(-0.5), sigmoid(4.5)
    want = [
        [0.361035, 0.759384, 0.972005, 0.997620, 1.0],
        [1.0, 0.533156, 0.991760, 1.0, 1.0],
    ]
    assert torch.allclose(w, torch.tensor(want), atol=1e-5)


def test_egrsd_advantages_hand_computed():
    from sdlens.mitigations.egrsd import egrsd_advantages, egrsd_gate, lookahead_entropy

    log11 = math.log(1.1)
    adv = torch.tensor([1.0, -2.0, 0.0])
    t_lp = torch.tensor([[log11, 1.0, 0.0], [log11, -1.0, 0.0], [0.5, 0.5, 0.5]])
    s_lp = torch.zeros(3, 3)
    ent = torch.tensor([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1], [1, 1, 1]])
    gate = egrsd_gate(lookahead_entropy(ent, mask, 0), 0.1, 1.0)
    got = egrsd_advantages(adv, t_lp - s_lp, gate, mask, lam=0.5, ratio_clip=0.2)
    g1 = 0.1 + 0.9 * math.exp(-1.0)  # gate at H = 1 nat: 0.431091
    want = [
        # A = 1: w = exp(+log 1.1) = 1.1; w = exp(1) clipped to 1.2; the third token has no teacher: A
        [1.0 * (0.5 + 0.5 * 1.1), 1.0 * (0.5 + 0.5 * 1.2 * g1), 1.0],
        # A = -2: w = exp(-log 1.1) = 0.909091; exp(+1) clipped to 1.2; delta 0: w = 1, gate 1
        [-2.0 * (0.5 + 0.5 / 1.1), -2.0 * (0.5 + 0.5 * 1.2 * g1), -2.0],
        [0.0, 0.0, 0.0],  # A = 0 stays 0
    ]
    assert torch.allclose(got, torch.tensor(want), atol=1e-6)
    assert got[0, 0].item() == pytest.approx(1.05) and got[1, 1].item() == pytest.approx(-1.517309, abs=1e-6)
    assert egrsd_gate(torch.tensor([0.0, 100.0]), 0.1, 1.0).tolist() == pytest.approx([1.0, 0.1])
    # CL-EGRSD look-ahead: a spike followed by confidence is transient (kept), a sustained high stretch is not
    ent = torch.tensor([[3.0, 0.0, 0.0, 5.0, 5.0, 5.0]])
    ones = torch.ones_like(ent)
    assert lookahead_entropy(ent, ones, 2).tolist() == [[0.0, 0.0, 0.0, 5.0, 5.0, 5.0]]
    assert lookahead_entropy(ent, ones, 0) is ent
    # only valid positions count: masking the confident tail keeps the high stretch high
    ent = torch.tensor([[2.0, 4.0, 4.0, 0.0, 0.0]])
    assert lookahead_entropy(ent, torch.ones_like(ent), 2).tolist() == [[2.0, 2.0, 0.0, 0.0, 0.0]]
    assert lookahead_entropy(ent, torch.tensor([[1, 1, 1, 0, 0]]), 2).tolist() == [[2.0, 4.0, 4.0, 0.0, 0.0]]


def test_rlcsd_hints_contrast_and_advantages_hand_computed():
    from sdlens.mitigations.rlcsd import contrast_hints, rlcsd_advantages, rlcsd_contrast

    rewards = [1, 0, 0, 1, 0, 0, 0, 0, 1, 1, 1, 1]
    # a correct rollout's positive is another correct one; negatives never include the rollout itself; groups
    # without a correct or without a wrong rollout give nothing
    assert contrast_hints(rewards, 4, max_negatives=1) == [(3, [1]), (0, [2]), (0, [1]), (0, [1])] + [(None, [])] * 8
    assert contrast_hints(rewards, 4)[0] == (3, [1, 2])

    pos = torch.tensor([[-1.0, -0.5], [-1.0, -1.0], [-1.0, -1.0]])
    neg = torch.tensor([[[-2.0, -0.5], [-3.0, -0.5]], [[-1.5, 0.0], [99.0, 99.0]], [[0.0, 0.0], [0.0, 0.0]]])
    neg_mask = torch.tensor([[1, 1], [1, 0], [0, 0]])
    e = rlcsd_contrast(pos, neg, neg_mask)
    # row 0: -1 - (logsumexp(-2, -3) - log 2) = -1 + 2 - log(1 + e^-1) + log 2 = 1.379885; -0.5 - (-0.5) = 0
    # row 1: one real negative (the 99s are padding): -1 - (-1.5) = 0.5, -1 - 0 = -1; row 2: no negative: 0
    assert torch.allclose(e, torch.tensor([[1.379885, 0.0], [0.5, -1.0], [0.0, 0.0]]), atol=1e-6)

    adv = torch.tensor([0.3, -0.3, 0.0, 0.3, 0.3])
    contrast = torch.tensor([[1.38, 1e-4], [1.0, -1.0], [1.0, 1.0], [-0.01, -1.0], [1.0, 1.0]])
    mask = torch.tensor([[1, 1], [1, 1], [1, 1], [1, 1], [0, 0]])
    shaped, selected = rlcsd_advantages(adv, contrast, mask)
    r_small = 0.5 * math.tanh(-0.01 / 0.02)  # -0.231059: above delta, selected
    want = [
        [0.3 + 0.5, 0.3],  # r = 0.5 tanh(69) = 0.5; r = 0.5 tanh(0.005) = 0.0025 < 0.02: not selected, A
        [0.0, -0.3 - 0.5],  # A < 0: -0.3 + 0.5 = 0.2 clamped to 0; -0.8 stays
        [0.0, 0.0],  # A = 0: 0 whatever r
        [0.3 + r_small, 0.0],  # 0.068941; 0.3 - 0.5 = -0.2 clamped to 0 (A > 0)
        [0.3, 0.3],  # no contrast for this rollout: A
    ]
    assert torch.allclose(shaped, torch.tensor(want), atol=1e-6)
    assert selected.tolist() == [[True, False], [True, True], [True, True], [True, True], [False, False]]
    big, _ = rlcsd_advantages(torch.tensor([0.3]), torch.tensor([[1.0]]), torch.ones(1, 1), scale=5.0, r_max=2.0)
    assert big.item() == pytest.approx(2.3)  # r = 5 tanh(50) clipped to 2


def test_purified_target_hand_computed():
    from sdlens.mitigations.purified import purified_target_logprobs

    log = torch.log
    teacher = log(torch.tensor([0.5, 0.25, 0.25]))
    ref = log(torch.tensor([0.25, 0.5, 0.25]))
    base = torch.zeros(3)  # uniform P_0
    # D = (log 2, -log 2, 0), mean 0; without clipping P* ~ P_0 exp(D) = (2, 1/2, 1) -> (4/7, 1/7, 2/7)
    got = purified_target_logprobs(teacher, ref, base, clip=1e6, beta=1.0).exp()
    assert torch.allclose(got, torch.tensor([4 / 7, 1 / 7, 2 / 7]), atol=1e-6)
    # beta = 2: (sqrt 2, 1 / sqrt 2, 1), normalised
    z = 2**0.5 + 2**-0.5 + 1
    got = purified_target_logprobs(teacher, ref, base, clip=1e6, beta=2.0).exp()
    assert torch.allclose(got, torch.tensor([2**0.5 / z, 2**-0.5 / z, 1 / z]), atol=1e-6)
    # c = 0.1: D~ = 0.1 tanh(D / 0.1) ~ (0.1, -0.1, 0)
    d = 0.1 * math.tanh(math.log(2) / 0.1)
    z = math.exp(d) + math.exp(-d) + 1
    got = purified_target_logprobs(teacher, ref, base, clip=0.1, beta=1.0).exp()
    assert torch.allclose(got, torch.tensor([math.exp(d) / z, math.exp(-d) / z, 1 / z]), atol=1e-6)
    # centring before the clip: D = (log 2, -log 4, -log 2) has mean -log(2)*2/3; with P_0 = (1/2, 1/4, 1/4)
    teacher, ref = log(torch.tensor([0.8, 0.1, 0.1])), log(torch.tensor([0.4, 0.4, 0.2]))
    p0 = torch.tensor([0.5, 0.25, 0.25])
    dc = [math.log(2) + 2 / 3 * math.log(2), -math.log(4) + 2 / 3 * math.log(2), -math.log(2) + 2 / 3 * math.log(2)]
    un = [p * math.exp(0.5 * math.tanh(x / 0.5)) for p, x in zip(p0.tolist(), dc, strict=True)]
    got = purified_target_logprobs(teacher, ref, log(p0) + 3.0, clip=0.5, beta=1.0).exp()  # P_0 from its logits
    assert torch.allclose(got, torch.tensor(un) / sum(un), atol=1e-6)


def test_purified_target_through_the_chunked_loss_equals_full_logits_with_gradients():
    from functools import partial

    from sdlens.mitigations.purified import purified_target_logprobs

    g = torch.Generator().manual_seed(5)
    B, T, H, V = 2, 5, 6, 11
    hs = torch.randn(B, T, H, generator=g, requires_grad=True)
    w = (torch.randn(V, H, generator=g) / H**0.5).requires_grad_(True)
    ht, hr, h0 = (torch.randn(B, T, H, generator=g) for _ in range(3))
    wt = torch.randn(V, H, generator=g) / H**0.5
    mask = torch.ones(B, T)
    mask[1, 3:] = 0.0
    pmi = partial(purified_target_logprobs, clip=2.0, beta=1.5)
    kw = {"mask": mask, "topk": None, "temperature": 0.7, "teacher_target": pmi}
    target = purified_target_logprobs(ht @ wt.T / 0.7, hr @ wt.T / 0.7, h0 @ wt.T / 0.7, 2.0, 1.5)
    want = generalized_jsd(torch.log_softmax(hs @ w.T / 0.7, -1), target, 0.5) * mask
    want.sum().backward()
    want_h, want_w = hs.grad.clone(), w.grad.clone()
    for chunked in (True, False):
        hs.grad = w.grad = None
        got = self_distillation_per_token(hs, w, (ht, hr, h0), wt, chunk_size=3, chunked=chunked, **kw).per_token_loss
        got.sum().backward()
        assert torch.allclose(got, want, atol=1e-6) and torch.all(got[1, 3:] == 0)
        assert torch.allclose(hs.grad, want_h, atol=1e-6) and torch.allclose(w.grad, want_w, atol=1e-6)
    empty = self_distillation_per_token(hs, w, (ht, hr, h0), wt, **{**kw, "mask": torch.zeros(B, T)}).per_token_loss
    assert empty.shape == (B, T) and float(empty.detach().abs().sum()) == 0.0 and empty.requires_grad
    with pytest.raises(ValueError, match="topk=None"):
        self_distillation_per_token(hs, w, (ht, hr, h0), wt, mask=mask, teacher_target=pmi)


def test_ssopd_pairs_hand_computed():
    from sdlens.mitigations.ssopd import ssopd_pairs

    rewards = [1, 0, 0, 1, 0, 0, 0, 0, 1, 1, 1, 0]
    lengths = [5, 7, 9, 3, 1, 1, 1, 1, 4, 2, 2, 8]
    demos, weights = ssopd_pairs(rewards, lengths, 4)
    # group 0: shortest correct = 3 (length 3), longest wrong = 2 (length 9), pass rate 1/2 -> 4 x 1/2 x 1/2 = 1
    # group 1: no correct rollout; group 2: shortest correct = 9 (tie with 10: the first), only wrong = 11, p = 3/4
    assert demos == [None, None, 3, None, None, None, None, None, None, None, None, 9]
    assert weights == [0, 0, 1.0, 0, 0, 0, 0, 0, 0, 0, 0, 0.75]
    with pytest.raises(ValueError, match="groups of 4"):
        ssopd_pairs([1, 0, 0], [1, 1, 1], 4)


def test_followup_presets_bring_their_papers_settings():
    base = preset_values("sdpo-paper")
    own = {
        "purified-opsd": {"purified", "purified_clip", "purified_beta"},
        "rlcsd": {"rlcsd", "rlcsd_negatives", "rlcsd_tau", "rlcsd_scale", "rlcsd_threshold", "rlcsd_eta", "rlcsd_clip"},
        "pw-opsd": {"position_weights", "position_weight_min", "position_weight_center", "position_weight_width"},
        "egrsd": {
            "egrsd",
            "egrsd_lambda",
            "egrsd_ratio_clip",
            "egrsd_gate_min",
            "egrsd_entropy_scale",
            "egrsd_lookahead",
        },
        "ssopd": {"ssopd", "ssopd_weight"},
    }
    # what each changes in sdpo-paper's TRL settings, exactly
    trl = {
        "purified-opsd": {"trl.learning_rate"},
        "rlcsd": {"trl.teacher_model_kind", "trl.teacher_update_rate", "trl.teacher_sync_steps",
                  "trl.distillation_weight", "trl.learning_rate", "trl.scale_rewards", "trl.loss_type", "trl.epsilon",
                  "trl.epsilon_high"},
        "pw-opsd": {"trl.distillation_alpha", "trl.distillation_mode", "trl.temperature", "trl.top_p", "trl.top_k",
                    "trl.learning_rate", "trl.max_grad_norm"},
        "egrsd": {"trl.distillation_weight", "trl.learning_rate", "trl.scale_rewards", "trl.loss_type",
                  "trl.epsilon", "trl.epsilon_high"},
        "ssopd": {"trl.teacher_model_kind", "trl.learning_rate", "trl.scale_rewards", "trl.loss_type",
                  "trl.epsilon", "trl.epsilon_high"},
    }  # fmt: skip
    assert set(FOLLOWUP_PRESETS) == set(own) and set(FOLLOWUP_PRESETS) <= set(MITIGATION_PRESETS)
    for name in FOLLOWUP_PRESETS:
        changed = {k for k, v in preset_values(name).items() if base.get(k, object()) != v}
        assert changed - own[name] == trl[name], name
        assert all(s.why for s in PRESETS[name].settings.values())
        cfg = resolve_config("sdpo", preset=name)
        assert getattr(cfg, name.replace("-opsd", "").replace("pw", "position_weights")) is True
        assert cfg.prompts_per_step == 256  # the rest is sdpo-paper's
    pw = resolve_config("sdpo", preset="pw-opsd")
    assert pw.trl["distillation_alpha"] == 0.0 and pw.trl["temperature"] == 1.1 and pw.position_weight_min == 0.25
    rl = resolve_config("sdpo", preset="rlcsd")
    assert (rl.rlcsd_tau, rl.rlcsd_scale, rl.rlcsd_threshold, rl.rlcsd_negatives) == (0.02, 0.5, 0.02, 4)


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["purified=true", "rlcsd=true"], "each replace the loss"),
        (["antisd=true", "egrsd=true"], "each replace the loss"),
        (["ssopd=true", "hedge_weight=0"], "ssopd replaces the loss"),
        (["position_weights=true", "egrsd=true"], "which egrsd replaces"),
        (["position_weights=true", "mix_on_suppression=0.5"], "position_weights cannot be combined"),
        (["purified=true", "teacher_context=trl"], "teacher_context: sdlens"),
        (["rlcsd=true", "teacher_richness=peer"], "drop teacher_richness"),
        (["purified=true", "chunked_distillation=false"], "chunked_distillation: true"),
        (["position_weights=true", "distillation_weight=0.5"], "distillation_weight 1.0"),
        (["purified_clip=0"], "purified_clip must be > 0"),
        (["rlcsd_negatives=0"], "rlcsd_negatives must be >= 1"),
        (["position_weight_min=1.5"], r"position_weight_min must be in \[0, 1\]"),
        (["egrsd_ratio_clip=1"], r"egrsd_ratio_clip must be in \[0, 1\)"),
        (["ssopd_weight=-1"], "ssopd_weight must be >= 0"),
    ],
)
def test_bad_followup_options_fail_with_one_line(sets, message):
    with pytest.raises(ValueError, match=message) as info:
        resolve_config("sdpo", preset="sdpo-paper", sets=sets)
    assert "\n" not in str(info.value)
