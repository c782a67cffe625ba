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
                lam = trainer.mitigations.antisd_lambda
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
    assert trainer.chunked_calls == 0 and trainer.mitigations.antisd
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
