"""sdlens.mitigations: each loss change against its closed form on hand-built tensors, the context ladder's
messages, the presets and the option checks (no training here: tests/test_mitigations_runs.py runs the presets)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

from sdlens.losses import generalized_jsd, reduce_per_token, self_distillation_per_token  # noqa: E402
from sdlens.mitigations import MITIGATION_PRESETS, RICHNESS  # noqa: E402
from sdlens.mitigations.antisd import (  # noqa: E402
    EntropyGate,
    antisd_advantages,
    antisd_phi,
    logps_entropy_from_hidden,
    logps_entropy_from_logits,
)
from sdlens.mitigations.context import ladder_teacher_messages, peer_demonstrations  # noqa: E402
from sdlens.mitigations.hedge import class_clip, hedge_weights  # noqa: E402
from sdlens.mitigations.mixing import fires  # noqa: E402
from sdlens.mitigations.trainer import MitigationSettings  # noqa: E402
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
    lp, ent = logps_entropy_from_hidden(hidden, weight, ids, temperature=0.7, chunk_size=3)
    assert torch.allclose(lp, lp_full, atol=1e-5) and torch.allclose(ent, ent_full, atol=1e-5)
    # uniform logits: entropy log V, every token log(1/V)
    lp0, ent0 = logps_entropy_from_hidden(torch.zeros(1, 2, H), weight, torch.tensor([[0, 7]]))
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
    from sdlens.mitigations.options import active_mitigations, needs_mitigation_trainer

    assert active_mitigations(cfg) == [] and not needs_mitigation_trainer(cfg)


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
    options = [f.name for f in fields(TrainConfig) if f.name in MitigationSettings.__dataclass_fields__]
    options.append("teacher_richness")
    for name in [*options, "mix_trigger"]:
        assert f"`{name}`" in doc, name
    assert "## Results on the model organism" in doc
