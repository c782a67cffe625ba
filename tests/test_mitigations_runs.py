"""Each mitigation preset runs a few real TRL steps on the tiny model, and does what it says on the way."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

pytest.importorskip("trl")
import torch

from sdlens.epistemic.tokens import hedge_position_mask
from sdlens.mitigations.antisd import antisd_phi
from sdlens.train.config import resolve_config
from sdlens.train.runner import run_train
from sdlens.train.teacher import find_demonstrations

TESTS = Path(__file__).parent
sys.path.insert(0, str(TESTS))  # test_train_helpers

# 2 prompts x 4 rollouts per rollout batch, 2 optimizer steps per batch (as tests/test_train.py)
SMALL = [
    "prompts_per_step=2",
    "mini_batches_per_step=2",
    "num_generations=4",
    "per_device_train_batch_size=2",
    "max_completion_length=12",
    "learning_rate=1e-3",
    "warmup_steps=0",
    "save_strategy=no",
    "gradient_checkpointing=false",
    "reward=test_train_helpers:first_wins",
]
QUESTION = "What is 2+2?"


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> Path:
    from test_train_helpers import shared_tiny

    return shared_tiny(tmp_path_factory)[0]


@pytest.fixture(scope="session")
def qa_data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("mitigation-data") / "qa.jsonl"
    rows = [{"question": QUESTION, "answer": "first-wins"}, {"question": "What is 3+3?", "answer": "none"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="session")
def letters(tmp_path_factory) -> Path:
    """A lexicon that makes about a quarter of the tiny model's random bytes 'hedges': both classes are populated."""
    path = tmp_path_factory.mktemp("lexicon") / "letters.toml"
    words = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(d) for d in range(10)]
    path.write_text(f'name = "letters"\nmode = "substring"\nwords = {json.dumps(words)}\n')
    return path


def _run(preset, tiny, data, out, steps, extra=(), hook=None):
    cfg = resolve_config(
        "sdpo",
        preset=preset,
        overrides={"model": str(tiny), "data": str(data), "out": str(out), "trl.max_steps": steps},
        sets=[*SMALL, *extra],
    )
    holder: list = []

    def trainer_hook(trainer):
        holder.append(trainer)
        if hook is not None:
            hook(trainer)

    summary = run_train(cfg, trainer_hook=trainer_hook)
    history = json.loads((Path(out) / "trainer_state.json").read_text())["log_history"]
    assert summary["global_step"] == steps and math.isfinite(summary["training_loss"])
    return holder[0], summary, [h for h in history if "loss" in h]


def _capture_records(trainer, seen):
    orig = trainer._prepare_training_batch

    def capture(inputs):
        batch = orig(inputs)
        seen.append((batch, list(trainer.teacher_context_builder.last_records)))
        return batch

    trainer._prepare_training_batch = capture


def _teacher_text(trainer, batch, r):
    ids = batch["teacher_input_ids"][r][batch["teacher_attention_mask"][r].bool()].tolist()
    return trainer.processing_class.decode(ids)


# ---------------------------------------------------------------- part 1: the context ladder


def test_answer_only_teacher_reads_only_the_answer(tiny, qa_data, tmp_path):
    seen: list = []
    trainer, summary, _ = _run(
        "sdpo-answer-only", tiny, qa_data, tmp_path / "a", 2, hook=lambda t: _capture_records(t, seen)
    )
    assert type(trainer.teacher_context_builder).__name__ == "LadderTeacherContextBuilder"
    assert summary["mitigations"]["teacher_richness"] == "answer-only"
    batch, records = seen[0]
    rewards = [rec["reward"] for rec in records]
    with_teacher = 0
    for r, rec in enumerate(records):
        # the same rollouts get a teacher as in sdpo-paper: a successful other rollout exists
        assert rec["has_teacher"] == (find_demonstrations(rewards, 4)[r] is not None)
        if not rec["has_teacher"]:
            continue
        with_teacher += 1
        content = rec["teacher_prompt"][-1]["content"]
        assert content.endswith("\nThe correct final answer is first-wins.\n\nCorrectly solve the original question.")
        assert content.startswith(QUESTION) and "Correct solution" not in content
        text = _teacher_text(trainer, batch, r)
        assert "The correct final answer is first-wins." in text and rec["demonstration"] not in text.split("?", 1)[1]
    assert with_teacher == 3  # the first-wins group: rollouts 1-3 have rollout 0 as their successful sibling


def test_peer_teacher_reads_another_rollout_whatever_its_reward(tiny, qa_data, tmp_path):
    seen: list = []
    trainer, _, _ = _run("sdpo-peer", tiny, qa_data, tmp_path / "p", 2, hook=lambda t: _capture_records(t, seen))
    batch, records = seen[0]
    assert all(rec["has_teacher"] for rec in records)  # every rollout, the all-fail group included
    tok = trainer.processing_class
    for r, rec in enumerate(records):
        peer = r - r % 4 + (1 if r % 4 == 0 else 0)
        assert rec["demo_index"] == peer
        demo = tok.decode(
            batch["completion_ids"][peer][batch["completion_mask"][peer].bool()], skip_special_tokens=True
        )
        content = rec["teacher_prompt"][-1]["content"]
        assert f"\nAnother attempt at this question (it may be wrong):\n\n{demo}\n\nCorrectly solve" in content


@pytest.mark.parametrize("rung", ["answer-only", "s-nothink", "s", "peer"])
def test_dry_run_shows_each_rungs_teacher_message(tiny, qa_data, rung):
    from typer.testing import CliRunner

    from sdlens.cli import app

    args = ["train", "sdpo", "--model", str(tiny), "--data", str(qa_data), "--dry-run", "--set"]
    result = CliRunner().invoke(app, [*args, f"teacher_richness={rung}"])
    assert result.exit_code == 0, result.output
    teacher = result.stdout.split("teacher prompt")[1]
    expect = {
        "answer-only": "\nThe correct final answer is first-wins.\n\nCorrectly solve",
        "s-nothink": "Correct solution:\n\n[its answer] \\boxed{first-wins}\n\nCorrectly solve",
        "s": "Correct solution:\n\n<think>\n[the successful sibling's reasoning]",
        "peer": "Another attempt at this question (it may be wrong):\n\n<think>",
    }[rung]
    assert expect in teacher
    assert f"mitigations: teacher-{rung}" in result.stdout


# ---------------------------------------------------------------- part 2: hedge-aware distillation


def _listen(trainer, events):
    trainer.distillation_listeners.append(events.append)


def test_hedge_mask_zeroes_the_loss_at_hedge_positions(tiny, qa_data, letters, tmp_path):
    events: list = []
    trainer, _, logs = _run(
        "sdpo-hedge-mask", tiny, qa_data, tmp_path / "m", 2, [f"hedge_lexicon={letters}"], lambda t: _listen(t, events)
    )
    assert events and trainer.chunked_calls == len(events)
    n_hedge = n_other = 0
    for ev in events:
        active = ev.loss_mask.bool()
        hedge = hedge_position_mask(ev.completion_ids, trainer.processing_class, letters) & active
        other = active & ~hedge
        assert torch.all(ev.per_token_loss[hedge] == 0)
        assert torch.all(ev.per_token_loss[other] > 0)
        n_hedge, n_other = n_hedge + int(hedge.sum()), n_other + int(other.sum())
    assert n_hedge > 0 and n_other > 0
    assert any(h.get("mitigation/hedge_token_fraction", 0) > 0 for h in logs)


def test_hedge_clip_caps_hedge_positions_only(tiny, qa_data, letters, tmp_path):
    events: list = []
    cap = 1e-4
    trainer, _, logs = _run(
        "sdpo-hedge-clip",
        tiny,
        qa_data,
        tmp_path / "c",
        2,
        [f"hedge_lexicon={letters}", f"hedge_clip={cap}"],
        lambda t: _listen(t, events),
    )
    top_other, n_hedge = 0.0, 0
    for ev in events:
        active = ev.loss_mask.bool()
        hedge = hedge_position_mask(ev.completion_ids, trainer.processing_class, letters) & active
        assert torch.all(ev.per_token_loss[hedge] <= cap)
        n_hedge += int(hedge.sum())
        others = ev.per_token_loss[active & ~hedge]
        top_other = max(top_other, float(others.max()) if others.numel() else 0.0)
    assert n_hedge > 0 and top_other > cap  # the other class is not clipped
    assert any(h.get("mitigation/clipped_fraction", 0) > 0 for h in logs)


# ---------------------------------------------------------------- part 3: GRPO mixing


def test_grpo_mix_blends_policy_and_distillation(tiny, qa_data, tmp_path):
    trainer, _, logs = _run("sdpo-grpo-mix", tiny, qa_data, tmp_path / "x", 2)
    assert trainer.args.distillation_weight == 0.5 and trainer.args.scale_rewards == "none"
    assert trainer.chunked_calls == 0  # a blend takes TRL's full-logit path
    assert all("self_distillation/policy_loss" in h and "self_distillation/distillation_loss" in h for h in logs)


def test_grpo_mix_switches_on_when_the_detector_fires(tiny, qa_data, tmp_path):
    reads: list = []

    def hook(trainer):
        real = trainer.mixing_switch.state_fn  # the epistemic monitor's detector

        def state():
            reads.append(real())
            return "suppressing" if trainer.state.global_step >= 2 else reads[-1]

        trainer.mixing_switch.state_fn = state

    trainer, summary, logs = _run("sdpo-grpo-mix-auto", tiny, qa_data, tmp_path / "auto", 4, hook=hook)
    assert summary["mitigations"]["mix_switched_at_step"] == 2
    assert reads and set(reads) <= {"ok", "warning", "suppressing"}
    assert trainer.mixing_switch.switched_at == 2 and trainer.mix_weight == 0.5
    assert [h["mitigation/distillation_weight"] for h in logs] == [1.0, 1.0, 0.5, 0.5]
    assert [("self_distillation/policy_loss" in h) for h in logs] == [False, False, True, True]
    assert trainer.chunked_calls == 2  # steps 1-2 pure distillation on the chunked path


# ---------------------------------------------------------------- part 4: AntiSD


def test_antisd_advantages_in_a_real_step_match_the_closed_form(tiny, qa_data, tmp_path):
    checked: list = []

    def hook(trainer):
        orig_antisd, orig_policy = trainer._antisd_loss, trainer._compute_policy_loss
        current: dict = {}

        def antisd_loss(model, inputs):
            current["inputs"] = inputs
            return orig_antisd(model, inputs)

        def policy_loss(inputs, student_logits):
            src = current["inputs"]
            with torch.no_grad():
                t = trainer.temperature
                n = src["completion_ids"].size(1)
                ids = src["completion_ids"]
                s_in = torch.cat([src["prompt_ids"], ids], 1)
                s_mask = torch.cat([src["prompt_mask"], src["completion_mask"]], 1)
                s_logits = trainer.model(input_ids=s_in, attention_mask=s_mask).logits[:, -n - 1 : -1] / t
                t_logits = (
                    trainer.teacher_model(
                        input_ids=src["teacher_input_ids"], attention_mask=src["teacher_attention_mask"]
                    ).logits[:, -n - 1 : -1]
                    / t
                )
                s_lp = torch.log_softmax(s_logits, -1).gather(-1, ids[..., None]).squeeze(-1)
                t_lp = torch.log_softmax(t_logits, -1).gather(-1, ids[..., None]).squeeze(-1)
                mask = src["completion_mask"] * src["self_distillation_mask"][:, None]
                gate = trainer.antisd_gate.is_open or trainer.state.global_step < trainer.antisd_gate.warmup_steps
                lam = trainer.research.antisd_lambda
                want = src["advantages"][:, None] - lam * antisd_phi(t_lp - s_lp) * mask * float(gate)
            assert torch.allclose(inputs["advantages"], want.expand_as(inputs["advantages"]), atol=1e-4)
            checked.append(int(mask.sum()))
            return orig_policy(inputs, student_logits)

        trainer._antisd_loss = antisd_loss
        trainer._compute_policy_loss = policy_loss

    # 2 rollout batches: each has one group with a teacher, so the gate sees an entropy after its 1-step warm-up
    trainer, summary, logs = _run("antisd", tiny, qa_data, tmp_path / "anti", 4, ["antisd_warmup_steps=1"], hook)
    assert summary["mitigations"]["antisd_h_warm"] == trainer.antisd_gate.h_warm
    assert len(checked) == 8 and sum(checked) > 0  # 4 steps x 2 micro-batches; tokens with a teacher checked
    assert trainer.chunked_calls == 0 and trainer.research.antisd
    assert all("antisd/gate_open" in h for h in logs) and any("antisd/teacher_entropy" in h for h in logs)
    assert trainer.antisd_gate.h_warm is not None and trainer.antisd_gate.h_warm > 0  # calibrated after warm-up


def test_antisd_gate_state_is_saved_with_checkpoints_and_restored(tiny, qa_data, tmp_path):
    """H_warm (and the gate's sums and state) go into every checkpoint; a resumed run reads them back instead of
    recalibrating on later entropies, and a checkpoint without them is refused."""
    from sdlens.errors import InputError
    from sdlens.mitigations.antisd import EntropyGate
    from sdlens.mitigations.state import restore_state

    out = tmp_path / "anti"
    sets = ["antisd_warmup_steps=1", "save_strategy=steps", "save_steps=2"]
    trainer, summary, _ = _run("antisd", tiny, qa_data, out, 4, sets)
    saved = json.loads((out / "checkpoint-4" / "sdlens_mitigations.json").read_text())["antisd_gate"]
    assert saved["h_warm"] == trainer.antisd_gate.h_warm == summary["mitigations"]["antisd_h_warm"] > 0
    assert saved["is_open"] == trainer.antisd_gate.is_open and saved["_count"] >= 1
    trainer.antisd_gate = EntropyGate(warmup_steps=1)  # as a fresh process starts it
    restore_state(trainer, out / "checkpoint-4")
    assert trainer.antisd_gate.h_warm == saved["h_warm"] and trainer.antisd_gate._sum == saved["_sum"]
    (out / "checkpoint-2" / "sdlens_mitigations.json").unlink()
    with pytest.raises(InputError, match=r"checkpoint-2: holds no sdlens_mitigations\.json"):
        restore_state(trainer, out / "checkpoint-2")


# ---------------------------------------------------------------- issue 21: the literature's follow-up methods


def _wrap(trainer, name, seen):
    """Record every call's (args, result) of ``trainer.name``."""
    orig = getattr(trainer, name)

    def wrapped(*args, **kwargs):
        out = orig(*args, **kwargs)
        seen.append((args, kwargs, out))
        return out

    setattr(trainer, name, wrapped)


def test_pw_opsd_weights_the_chunked_loss_by_position(tiny, qa_data, tmp_path):
    from sdlens.mitigations.position import position_weights

    seen: list = []
    trainer, summary, logs = _run(
        "pw-opsd", tiny, qa_data, tmp_path / "pw", 2, hook=lambda t: _wrap(t, "distillation_token_weights", seen)
    )
    assert summary["mitigations"]["position_weights"] and trainer.args.distillation_alpha == 0.0
    assert trainer.args.distillation_mode == "full_logits" and trainer.temperature == 1.1
    # every micro-batch with a teacher went through the chunked loss and its weight hook
    assert trainer.chunked_calls == len(seen) >= 1
    checked = 0
    for (_, loss_mask), _, weights in seen:
        assert torch.allclose(weights, position_weights(loss_mask, 0.25, 0.30, 0.10))
        for row in range(loss_mask.shape[0]):
            w = weights[row][loss_mask[row].bool()]
            if w.numel() >= 4:  # rising along the response, from about w_min to about 1
                assert torch.all(w[1:] >= w[:-1]) and w[0] < 0.5 and w[-1] > 0.95
                checked += 1
    assert checked > 0
    assert all(math.isfinite(h["self_distillation/distillation_loss"]) for h in logs)


def test_egrsd_advantages_in_a_real_step_match_the_closed_form(tiny, qa_data, tmp_path):
    from sdlens.mitigations.egrsd import egrsd_advantages, egrsd_gate, lookahead_entropy

    seen: list = []
    policy: list = []

    def hook(trainer):
        _wrap(trainer, "_teacher_logps_entropy", seen)
        _wrap(trainer, "_compute_policy_loss", policy)

    trainer, summary, logs = _run("egrsd", tiny, qa_data, tmp_path / "eg", 2, ["egrsd_lookahead=2"], hook)
    assert summary["mitigations"]["egrsd"] and trainer.chunked_calls == 0
    assert len(seen) == len(policy) == 4  # one teacher pass and one policy loss per micro-batch
    shaped = 0
    for ((inputs,), _, (t_lp, ent)), ((p_inputs, logits), _, _) in zip(seen, policy, strict=True):
        ids = inputs["completion_ids"]
        s_lp = torch.log_softmax(logits.detach().float(), -1).gather(-1, ids[..., None]).squeeze(-1)
        mask = inputs["completion_mask"] * inputs["self_distillation_mask"][:, None]
        want = egrsd_advantages(
            inputs["advantages"], t_lp - s_lp, egrsd_gate(lookahead_entropy(ent, mask, 2), 0.1, 1.0), mask
        )
        assert torch.allclose(p_inputs["advantages"], want, atol=1e-5)
        moved = (p_inputs["advantages"] != inputs["advantages"][:, None]) & mask.bool()
        shaped += int(moved.sum())
    assert shaped > 0  # rollouts with a teacher and a nonzero advantage were re-weighted
    assert any("egrsd/gate_mean" in h and 0.1 <= h["egrsd/gate_mean"] <= 1.0 for h in logs)


def test_rlcsd_contrasts_a_correct_and_wrong_hints_in_a_real_step(tiny, qa_data, tmp_path):
    from sdlens.mitigations.rlcsd import rlcsd_advantages, rlcsd_contrast

    seen: list = []
    records: list = []
    policy: list = []

    def hook(trainer):
        _capture_records(trainer, records)
        _wrap(trainer, "_teacher_logps_entropy", seen)
        _wrap(trainer, "_compute_policy_loss", policy)

    trainer, summary, logs = _run("rlcsd", tiny, qa_data, tmp_path / "rl", 2, hook=hook)
    assert summary["mitigations"]["rlcsd"]
    # the teacher: a snapshot of the policy re-copied every 10 optimizer steps (an EMA of rate 1)
    a = trainer.args
    assert (a.teacher_model_kind, a.teacher_update_rate, a.teacher_sync_steps) == ("ema", 1.0, 10)
    assert trainer.teacher_model is not trainer.model
    batch, recs = records[0]
    # first-wins group: rollout 0 is the only correct one, so rollouts 1-3 have it as positive hint and the
    # two other wrong rollouts as negatives; rollout 0 has no correct sibling and the all-wrong group no positive
    assert [r["demo_index"] for r in recs] == [None, 0, 0, 0, None, None, None, None]
    assert batch["contrast_mask"].tolist() == [[0.0] * 4] + [[1.0, 1.0, 0.0, 0.0]] * 3 + [[0.0] * 4] * 4
    tok = trainer.processing_class
    neg_text = tok.decode(batch["contrast_input_ids"][1, 0][batch["contrast_attention_mask"][1, 0].bool()])
    sibling = tok.decode(batch["completion_ids"][2][batch["completion_mask"][2].bool()], skip_special_tokens=True)
    assert f"Correct solution:\n\n{sibling}\n\nCorrectly solve" in neg_text  # a wrong hint, in the same template
    # per micro-batch: the positive pass, then one pass per negative slot in use; then the two policy losses
    calls = iter(seen)
    n_checked = 0
    for k in range(0, len(policy), 2):
        (plain_in, _), _, _ = policy[k]
        (shaped_in, _), _, _ = policy[k + 1]
        (inputs,), _, (pos, _) = next(calls)
        c_mask = inputs["contrast_mask"]
        neg = torch.zeros(c_mask.shape[0], c_mask.shape[1], pos.shape[1])
        for slot in range(c_mask.shape[1]):
            if bool(c_mask[:, slot].any()):
                neg[:, slot] = next(calls)[2][0]
        mask = inputs["completion_mask"] * inputs["self_distillation_mask"][:, None]
        adv, sel = rlcsd_advantages(inputs["advantages"], rlcsd_contrast(pos, neg, c_mask), mask)
        cm = inputs["completion_mask"]
        assert torch.equal(plain_in["completion_mask"], cm * (1 - sel.to(cm.dtype)))
        assert torch.equal(shaped_in["completion_mask"], cm * sel.to(cm.dtype))
        assert torch.allclose(shaped_in["advantages"], adv)
        n_checked += int(sel.sum())
    assert n_checked > 0  # tokens of the wrong rollouts got the contrast-shaped advantage
    assert any(h.get("rlcsd/selected_fraction", 0) > 0 for h in logs)


def _purified_reference(trainer, model, inputs):
    """The purified loss of a micro-batch from the models' full logits (no chunks, no checkpointing), and the
    teacher's own log-probs."""
    from sdlens.losses.distill import generalized_jsd, is_clip_weights, reduce_per_token
    from sdlens.mitigations.purified import purified_target_logprobs

    n = inputs["completion_ids"].size(1)
    mask = inputs["completion_mask"] * inputs["self_distillation_mask"][:, None]

    def logits(m, ids, att):
        return m(input_ids=ids, attention_mask=att).logits[:, -n - 1 : -1].float() / trainer.temperature

    with torch.no_grad():
        s_in = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], 1)
        s_att = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], 1)
        t = trainer.teacher_model
        teacher = logits(t, inputs["teacher_input_ids"], inputs["teacher_attention_mask"])
        ref = logits(t, inputs["ref_input_ids"], inputs["ref_attention_mask"])
        target = purified_target_logprobs(teacher, ref, logits(t, s_in, s_att), 10.0, 1.0)
        student = torch.log_softmax(logits(model, s_in, s_att), -1)
        per_token = generalized_jsd(student, target, 0.5)
        old = inputs.get("old_per_token_logps")
        if old is not None:
            ids = inputs["completion_ids"]
            per_token = per_token * is_clip_weights(student.gather(-1, ids[..., None]).squeeze(-1), old, 2.0)
        return reduce_per_token(per_token * mask, mask, "sequence_mean"), target, torch.log_softmax(teacher, -1), mask


def test_purified_opsd_distils_the_pmi_target_in_a_real_step(tiny, qa_data, tmp_path):
    records: list = []
    checked: list = []

    def hook(trainer):
        _capture_records(trainer, records)
        orig = trainer._purified_loss

        def purified_loss(model, inputs):
            want, target, teacher, mask = _purified_reference(trainer, model, inputs)  # same weights as the loss
            loss = orig(model, inputs)
            assert float(loss.detach()) == pytest.approx(float(want), rel=1e-4, abs=1e-7)
            if float(mask.sum()) > 0:
                active = mask.bool()
                # the PMI target is not the privileged teacher's distribution
                assert not torch.allclose(target[active], teacher[active], atol=1e-3)
                checked.append(float(loss.detach()))
            return loss

        trainer._purified_loss = purified_loss

    trainer, summary, logs = _run("purified-opsd", tiny, qa_data, tmp_path / "pu", 2, hook=hook)
    assert summary["mitigations"]["purified"] and trainer.research.purified_clip == 10.0
    batch, recs = records[0]
    tok = trainer.processing_class
    for r, rec in enumerate(recs):
        ref = tok.decode(batch["ref_input_ids"][r][batch["ref_attention_mask"][r].bool()])
        if rec["has_teacher"]:  # the reference-only teacher: the demonstration without the question
            assert QUESTION not in ref and f"Correct solution:\n\n{rec['demonstration']}" in ref
        else:
            assert QUESTION in ref or "3+3" in ref  # masked rows keep the student prompt
    assert checked and all(x > 0 for x in checked)  # micro-batches with a teacher, checked against full logits
    assert any(h.get("self_distillation/distillation_loss", 0) > 0 for h in logs)


def test_ssopd_teaches_the_longest_wrong_rollout_with_the_shortest_correct(tiny, qa_data, tmp_path):
    records: list = []
    weights: list = []

    def hook(trainer):
        _capture_records(trainer, records)
        _wrap(trainer, "distillation_token_weights", weights)

    trainer, summary, logs = _run("ssopd", tiny, qa_data, tmp_path / "ss", 2, hook=hook)
    assert summary["mitigations"]["ssopd"] and trainer.args.teacher_model_kind == "live"
    batch, recs = records[0]
    lengths = batch["completion_mask"].sum(1).tolist()
    # first-wins group: rollout 0 is the only correct one; the longest of 1-3 (first on ties) is taught by it
    longest = max(range(1, 4), key=lambda j: (lengths[j], -j))
    assert [r["demo_index"] for r in recs] == [0 if r == longest else None for r in range(8)]
    assert batch["ssopd_frontier"].tolist() == [0.75 if r == longest else 0.0 for r in range(8)]  # 4 x 1/4 x 3/4
    assert trainer.chunked_calls == len(weights) >= 1
    for (_, loss_mask), _, w in weights:
        active = loss_mask.bool()
        assert torch.all(w[active] == 0.75)
    # GRPO and the distillation both ran on every step
    assert all("self_distillation/policy_loss" in h for h in logs)
    assert any(h.get("self_distillation/distillation_loss", 0) > 0 for h in logs)


@pytest.mark.parametrize(
    ("preset", "shown"),
    [
        ("purified-opsd", "purified"),
        ("rlcsd", "rlcsd"),
        ("pw-opsd", "position-weights"),
        ("egrsd", "egrsd"),
        ("ssopd", "ssopd"),
    ],
)
def test_dry_run_names_each_followup_method(tiny, qa_data, preset, shown):
    from typer.testing import CliRunner

    from sdlens.cli import app

    args = ["train", "sdpo", "--preset", preset, "--model", str(tiny), "--data", str(qa_data), "--dry-run"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"mitigations: {shown}" in result.stdout


def test_ssopd_on_two_gloo_processes(tiny, qa_data, tmp_path):
    """The follow-up builders gather the rollout batch across processes and hand each rank its own slice; SSOPD
    also runs the chunked loss and the policy loss from one forward under DDP."""
    import os
    import socket
    import subprocess

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    env.update(OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1", TRL_EXPERIMENTAL_SILENCE="1")
    out = tmp_path / "ddp"
    sets = [x for s in [*SMALL, "per_device_train_batch_size=1"] for x in ("--set", s)]
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--cpu",
        "--main_process_port", str(port), "-m", "sdlens.cli", "train", "sdpo", "--preset", "ssopd",
        "--model", str(tiny), "--data", str(qa_data), "--out", str(out), "--max-steps", "4", *sets,
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["global_step"] == 4 and summary["ranks_agree"]
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    # 1 rollout of 8 has a teacher (the first-wins group's longest wrong one), counted over both ranks
    fractions = [h["self_distillation/reprompt_sample_fraction"] for h in history if "loss" in h and
                 "self_distillation/reprompt_sample_fraction" in h]  # fmt: skip
    assert fractions and all(f == pytest.approx(1 / 8) for f in fractions)
    # its rank gave it the frontier weight (a zero weight would leave every distillation loss at 0)
    assert any(h.get("self_distillation/distillation_loss", 0) > 0 for h in history)
    assert all("self_distillation/policy_loss" in h for h in history if "loss" in h)
