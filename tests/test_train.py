"""sdlens.train: teacher context, presets / config, data, rewards, and short real runs of TRL's trainers on CPU."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

pytest.importorskip("trl")
import torch

from sdlens.epistemic.segment import split_thinking
from sdlens.prompts import PAPER_REPROMPT_TEMPLATE, PAPER_SOLUTION_TEMPLATE, PAPER_SUFFIX
from sdlens.train.config import TrainConfig, derive_batches, resolve_config, trl_config_class
from sdlens.train.data import load_rl_rows, load_sft_rows, rewrite_dapo_prompt
from sdlens.train.presets import PRESETS, preset_settings
from sdlens.train.rewards import GraderReward, make_reward
from sdlens.train.runner import build_trl_kwargs, find_checkpoint, run_train
from sdlens.train.teacher import (
    build_teacher_messages,
    find_demonstrations,
    remove_thinking_trace,
    tokenize_prompts,
)

TESTS = Path(__file__).parent
sys.path.insert(0, str(TESTS))  # test_train_helpers (also used by the subprocess tests)

# A run small enough for CPU tests: 2 prompts x 4 rollouts per rollout batch, 2 optimizer steps per batch.
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


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> Path:
    from test_train_helpers import shared_tiny

    out, info = shared_tiny(tmp_path_factory)
    assert info["calibration"]["stop_prob"] == pytest.approx(1 / 16, rel=0.05)
    return out


@pytest.fixture(scope="session")
def qa_data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "qa.jsonl"
    rows = [{"question": "What is 2+2?", "answer": "first-wins"}, {"question": "What is 3+3?", "answer": "none"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# ---------------------------------------------------------------- teacher context


def test_remove_thinking_paired_preopened_and_plain():
    assert (
        remove_thinking_trace("<think>\nhmm, wait\n</think>\n\nThe answer is \\boxed{4}.")
        == "The answer is \\boxed{4}."
    )
    # a pre-opened template (DeepSeek-R1-Distill): only the closing tag is in the response
    assert remove_thinking_trace("hmm, wait, 2+2\n</think>\n\nSo \\boxed{4}") == "So \\boxed{4}"
    assert remove_thinking_trace("no tags \\boxed{4}  ") == "no tags \\boxed{4}  "  # nothing else is stripped
    # every paired block goes, then everything up to a stray </think> (the paper's step 2, unconditional)
    assert remove_thinking_trace("<think>a</think> x <think>b</think>y") == "x y"
    assert remove_thinking_trace("<think>a</think> x </think> y") == "y"
    # truncated inside thinking: no closing tag, nothing removed (as the paper)
    assert remove_thinking_trace("<think>still thinking") == "<think>still thinking"
    for text in ("<think>\nr\n</think>\n\nanswer", "r\n</think>\n\nanswer"):
        assert remove_thinking_trace(text) == split_thinking(text)[1].lstrip()


def test_teacher_prompt_is_the_papers_exactly():
    prompt = [{"role": "user", "content": "What is 2+2?" + PAPER_SUFFIX}]
    msgs = build_teacher_messages(prompt, "<think>\nhmm\n</think>\n\n\\boxed{4}")
    assert msgs == [
        {
            "role": "user",
            "content": "What is 2+2?\nPlease reason step by step, and put your final answer within \\boxed{}."
            "\nCorrect solution:\n\n<think>\nhmm\n</think>\n\n\\boxed{4}\n\nCorrectly solve the original question.",
        }
    ]
    nothink = build_teacher_messages(prompt, "hmm\n</think>\n\n\\boxed{4}", remove_thinking=True)
    assert nothink[0]["content"].endswith("Correct solution:\n\n\\boxed{4}\n\nCorrectly solve the original question.")
    system = [{"role": "system", "content": "Be brief."}, *prompt]
    assert build_teacher_messages(system, "x")[0] == system[0]
    assert build_teacher_messages("Q", "D") == "Q\nCorrect solution:\n\nD\n\nCorrectly solve the original question."
    assert build_teacher_messages(prompt, None)[0]["content"].endswith("\n\nCorrectly solve the original question.")
    with pytest.raises(ValueError, match="user message"):
        build_teacher_messages([{"role": "assistant", "content": "x"}], "d")
    # TRL's defaults differ from the paper's
    trl_cls = trl_config_class("sdpo")
    trl_fields = trl_cls.__dataclass_fields__
    assert trl_fields["reprompt_template"].default != PAPER_REPROMPT_TEMPLATE
    assert trl_fields["solution_template"].default != PAPER_SOLUTION_TEMPLATE


def test_demonstration_is_the_first_successful_other_rollout():
    rewards = [0, 1, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0]
    assert find_demonstrations(rewards, 4) == [1, 2, 1, 1, None, None, None, None, None, 8, 8, 8]
    assert find_demonstrations(rewards, 4, exclude_self=False)[1] == 1
    assert find_demonstrations([0.4, 0.5], 2) == [1, None]  # threshold 0.5
    with pytest.raises(ValueError):
        find_demonstrations([1, 0, 0], 2)


# ---------------------------------------------------------------- presets and config


def test_presets_resolve_to_valid_trl_configs():
    for name, p in PRESETS.items():
        cfg = resolve_config(p.algo, preset=name, overrides={"out": "/tmp/x"})
        batches = derive_batches(cfg, world_size=4)
        kwargs = build_trl_kwargs(cfg, batches)
        args = trl_config_class(p.algo)(**kwargs)
        for key, setting in preset_settings(name).items():
            if key.startswith("trl.") and key[4:] not in ("report_to", "save_strategy", "lr_scheduler_type"):
                assert getattr(args, key[4:]) == setting.value, (name, key)
    sdpo = resolve_config("sdpo", preset="sdpo-paper")
    assert sdpo.trl["distillation_alpha"] == 0.5 and sdpo.trl["distillation_topk"] == 100
    assert sdpo.trl["teacher_model_kind"] == "base" and sdpo.trl["success_reward_threshold"] == 0.5
    assert resolve_config("sdpo", preset="sdpo-paper-nothink").trl["remove_thinking_from_demonstration"] is True
    ema = resolve_config("sdpo", preset="sdpo-paper-ema")
    assert ema.trl["teacher_update_rate"] == 0.05
    kw = build_trl_kwargs(ema, derive_batches(ema, world_size=4))
    assert kw["teacher_sync_steps"] == 2  # once per rollout batch of 2 optimizer steps
    grpo = resolve_config("grpo", preset="grpo-paper")
    assert (
        grpo.trl["scale_rewards"] == "none" and grpo.trl["epsilon_high"] == 0.28 and grpo.trl["learning_rate"] == 1e-6
    )


def test_paper_batches_on_four_gpus():
    cfg = resolve_config("sdpo", preset="sdpo-paper")
    b = derive_batches(cfg, world_size=4)
    # 256 prompts x 8 = 2048 completions, 2 optimizer steps of 1024 = 4 GPUs x micro-batch 1 x 256 accumulation
    assert (b["completions"], b["gradient_accumulation_steps"], b["steps_per_generation"]) == (2048, 256, 512)
    capped = derive_batches(cfg, world_size=2, n_rows=64)
    assert capped["prompts"] == 64 and "64 rows" in capped["note"]
    with pytest.raises(ValueError, match="does not split"):
        derive_batches(resolve_config("sdpo", preset="sdpo-paper", sets=["per_device_train_batch_size=3"]), 4)
    with pytest.raises(ValueError, match="prompts_per_step"):
        derive_batches(resolve_config("sdpo", preset="sdpo-paper", sets=["gradient_accumulation_steps=2"]), 1)


def test_config_layers_yaml_and_set(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(
        "algo: sdpo\npreset: sdpo-paper-ema\nmodel: m\nlearning_rate: 1e-5\nsave_strategy: no\n"
        "trl:\n  max_steps: 7\nreward: math-verify\n"
    )
    cfg = resolve_config(config_file=path, overrides={"trl.max_steps": 9}, sets=["teacher_update_rate=0.1"])
    assert cfg.algo == "sdpo" and cfg.preset == "sdpo-paper-ema" and cfg.reward == "math-verify"
    assert cfg.trl["learning_rate"] == 1e-5 and isinstance(cfg.trl["learning_rate"], float)  # "1e-5" is a str in YAML
    assert cfg.trl["save_strategy"] == "no"  # YAML 1.1 reads `no` as False
    assert cfg.trl["max_steps"] == 9 and cfg.trl["teacher_update_rate"] == 0.1
    assert cfg.trl["distillation_alpha"] == 0.5  # from the preset
    with pytest.raises(ValueError, match="did you mean learning_rate"):
        resolve_config("sdpo", sets=["learnin_rate=1"])
    with pytest.raises(ValueError, match="is for sdpo"):
        resolve_config("grpo", preset="sdpo-paper")
    with pytest.raises(ValueError, match="teacher_context"):
        resolve_config("sdpo", sets=["teacher_context=mine"])
    assert all(f.metadata.get("help") for f in TrainConfig.__dataclass_fields__.values())


def test_end_process_group_destroys_a_live_group_and_is_a_no_op_without_one(tmp_path):
    """`sdlens train` ends its process group itself (gloo's threads left to the interpreter's teardown can abort a
    finished rank): a real one-rank gloo group is destroyed; with none, nothing happens."""
    import torch.distributed as dist

    from sdlens.train.runner import end_process_group

    end_process_group()  # no group: nothing to do
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        assert dist.is_initialized()
        end_process_group()
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_find_checkpoint_skips_incomplete(tmp_path):
    for n, files in ((1, ["trainer_state.json"]), (2, ["trainer_state.json"]), (3, ["model.safetensors"])):
        d = tmp_path / f"checkpoint-{n}"
        d.mkdir()
        for f in files:
            (d / f).write_text("{}")
    assert find_checkpoint(tmp_path).name == "checkpoint-2"
    assert find_checkpoint(tmp_path, need_teacher=True) is None
    assert find_checkpoint(tmp_path / "missing") is None


# ---------------------------------------------------------------- data and rewards


def test_duplicated_rows_stay_separate_groups():
    rows = load_rl_rows("seen_8x8")  # the shipped subset, by name
    assert len(rows) == 64
    ids = [r["problem_id"] for r in rows]
    assert len(set(ids)) == 8 and all(ids.count(i) == 8 for i in set(ids))
    assert all(r["prompt"][-1]["content"].endswith(PAPER_SUFFIX) and r["answer"] for r in rows)
    assert [r["row"] for r in rows] == list(range(64))


def test_generic_and_sft_data(tmp_path):
    raw = tmp_path / "raw.jsonl"
    raw.write_text(json.dumps({"problem": "1+1?", "solution": "2", "id": "a"}) + "\n")
    (row,) = load_rl_rows(str(raw))
    assert row["prompt"] == [{"role": "user", "content": "1+1?" + PAPER_SUFFIX}] and row["answer"] == "2"
    dapo = (
        "Solve the following math problem step by step. The last line of your response should be of the form "
        "Answer: $Answer (without quotes) where $Answer is the answer to the problem.\n\nFind x.\n\n"
        'Remember to put your answer on its own line after "Answer:".'
    )
    assert rewrite_dapo_prompt(dapo) == "Find x." + PAPER_SUFFIX
    alpaca = tmp_path / "sft.json"
    alpaca.write_text(json.dumps([{"instruction": "Q?", "input": "", "output": "A.", "system": "Sys."}]))
    (s,) = load_sft_rows(str(alpaca))
    assert s == {
        "prompt": [{"role": "system", "content": "Sys."}, {"role": "user", "content": "Q?"}],
        "completion": [{"role": "assistant", "content": "A."}],
    }
    conv = tmp_path / "conv.jsonl"
    conv.write_text(json.dumps({"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]}))
    assert load_sft_rows(str(conv))[0]["completion"] == [{"role": "assistant", "content": "A"}]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "x"}) + "\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl:1: no prompt"):
        load_rl_rows(str(bad))


def test_grader_rewards():
    reward = GraderReward("paper-reward", workers=1)
    comps = [[{"role": "assistant", "content": "so \\boxed{640}"}], "\\boxed{641}", "no box"]
    assert reward(prompts=[None] * 3, completions=comps, answer=["640", "640", "640"]) == [1.0, 0.0, 0.0]
    assert make_reward("test_train_helpers:first_wins")(answer=["first-wins"] * 4) == [1.0, 0.0, 0.0, 0.0]
    assert make_reward("math-verify").__name__ == "reward_math_verify"
    with pytest.raises(ValueError, match="unknown reward"):
        make_reward("nope")


# ---------------------------------------------------------------- real runs


def _cfg(algo, preset, model, data, out, steps, extra=()):
    return resolve_config(
        algo,
        preset=preset,
        overrides={"model": str(model), "data": str(data), "out": str(out), "trl.max_steps": steps},
        sets=[*SMALL, *extra] if algo != "sft" else list(extra),
    )


def _rows(batch, r):
    return {k: v[r : r + 1] for k, v in batch.items() if torch.is_tensor(v) and v.dim() > 0}


def test_sdpo_builds_the_teacher_context_and_distills(tiny, qa_data, tmp_path):
    from sdlens.models import load_causal_lm

    seen: list[tuple[dict, list, list]] = []

    def hook(trainer):
        orig = trainer._prepare_training_batch

        def capture(inputs):
            batch = orig(inputs)
            with torch.no_grad():
                losses = []
                for r in range(batch["completion_ids"].size(0)):
                    sub = _rows(batch, r)
                    d = trainer._compute_teacher_student_logits(trainer.model, trainer.teacher_model, sub)
                    losses.append(float(trainer._compute_self_distillation_loss(trainer.model, sub, d)))
            seen.append((batch, list(trainer.teacher_context_builder.last_records), losses))
            return batch

        trainer._prepare_training_batch = capture
        seen_trainer.append(trainer)

    seen_trainer: list = []
    out = tmp_path / "run"
    summary = run_train(_cfg("sdpo", "sdpo-paper", tiny, qa_data, out, 4), trainer_hook=hook)
    trainer = seen_trainer[0]
    tok = trainer.processing_class
    assert summary["global_step"] == 4 and len(seen) == 2  # 2 rollout batches of 2 optimizer steps
    assert type(trainer).__name__ == "SdlensSDPOTrainer" and trainer.chunked_calls > 0

    with_teacher = without = 0
    for batch, records, losses in seen:
        assert len(records) == len(losses) == 8
        for r, (rec, loss) in enumerate(zip(records, losses, strict=True)):
            group = range(r - r % 4, r - r % 4 + 4)
            sibling = next((j for j in group if j != r and records[j]["reward"] >= 0.5), None)
            assert rec["demo_index"] == sibling and rec["has_teacher"] == (sibling is not None)
            if sibling is None:
                assert loss == 0.0  # exactly: no successful other rollout, no teacher
                without += 1
                continue
            with_teacher += 1
            assert loss > 0.0 and math.isfinite(loss)
            # the rendered teacher prompt, token for token
            demo_ids = batch["completion_ids"][sibling][batch["completion_mask"][sibling].bool()]
            demo = tok.decode(demo_ids, skip_special_tokens=True)
            assert rec["demonstration"] == demo
            question = "What is 2+2?" + PAPER_SUFFIX
            expected = [
                {
                    "role": "user",
                    "content": f"{question}\nCorrect solution:\n\n{demo}\n\nCorrectly solve the original question.",
                }
            ]
            want = tokenize_prompts(tok, [expected], {"enable_thinking": True})[0]
            got = batch["teacher_input_ids"][r][batch["teacher_attention_mask"][r].bool()].tolist()
            student = batch["completion_ids"][r][batch["completion_mask"][r].bool()].tolist()
            assert got == want + student
            text = tok.decode(got[: len(want)])
            assert text.startswith("<|im_start|>user\nWhat is 2+2?\nPlease reason step by step")
            assert text.endswith("\n\nCorrectly solve the original question.<|im_end|>\n<|im_start|>assistant\n")
    assert with_teacher == 6 and without == 10  # per batch: 3 with a teacher, the lone success and 4 "none" without

    logged = [json.loads(x) for x in (out / "teacher_prompts.jsonl").read_text().splitlines()]
    assert logged and all("Correct solution:" in x["teacher_prompt"] for x in logged if x["has_teacher"])
    # the frozen teacher is the initial model, the student moved
    initial = load_causal_lm(str(tiny))
    teacher = trainer.accelerator.unwrap_model(trainer.teacher_model)
    for (name, p0), p1 in zip(initial.named_parameters(), teacher.parameters(), strict=True):
        assert torch.equal(p0, p1), name
    student = dict(trainer.accelerator.unwrap_model(trainer.model).named_parameters())
    assert any(not torch.equal(p0, student[n]) for n, p0 in initial.named_parameters())
    # the run folder
    for name in ("model.safetensors", "trainer_state.json", "sdlens_train.yaml", "trl_args.json", "run_summary.json"):
        assert (out / name).is_file(), name
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 4 and any("loss" in h for h in state["log_history"])


def test_sdpo_ema_teacher_moves_by_the_rate(tiny, qa_data, tmp_path):
    from transformers import TrainerCallback

    snaps: list[tuple[int, dict, dict]] = []

    class Snap(TrainerCallback):  # runs before TRL's teacher sync (added later by the trainer)
        def on_step_end(self, args, state, control, **kw):
            tr = holder[0]
            s = {n: p.detach().clone() for n, p in tr.accelerator.unwrap_model(tr.model).named_parameters()}
            t = {n: p.detach().clone() for n, p in tr.accelerator.unwrap_model(tr.teacher_model).named_parameters()}
            snaps.append((state.global_step, s, t))

    holder: list = []
    run_train(
        _cfg("sdpo", "sdpo-paper-ema", tiny, qa_data, tmp_path / "ema", 4),
        callbacks=[Snap()],
        trainer_hook=holder.append,
    )
    trainer = holder[0]
    assert trainer.args.teacher_update_rate == 0.05 and trainer.args.teacher_sync_steps == 2
    final = {n: p.detach() for n, p in trainer.accelerator.unwrap_model(trainer.teacher_model).named_parameters()}
    after = [t for _, _, t in snaps[1:]] + [final]  # the teacher after each step's sync
    moved = 0
    for (step, student, before), nxt in zip(snaps, after, strict=True):
        for name, t0 in before.items():
            expected = 0.95 * t0 + 0.05 * student[name] if step % 2 == 0 else t0
            assert torch.allclose(nxt[name], expected, atol=1e-6, rtol=1e-5), (step, name)
        moved += any(not torch.equal(before[n], nxt[n]) for n in before)
    assert moved == 2  # after optimizer steps 2 and 4 only


def test_grpo_runs(tiny, qa_data, tmp_path):
    holder: list = []
    out = tmp_path / "grpo"
    summary = run_train(_cfg("grpo", "grpo-paper", tiny, qa_data, out, 2), trainer_hook=holder.append)
    args = holder[0].args
    assert type(holder[0]).__name__ == "GRPOTrainer" and summary["global_step"] == 2
    assert (args.scale_rewards, args.epsilon_high, args.delta, args.beta) == ("none", 0.28, 3.0, 0.0)
    state = json.loads((out / "trainer_state.json").read_text())
    assert any("loss" in h for h in state["log_history"]) and (out / "model.safetensors").is_file()


def test_sft_runs(tiny, tmp_path):
    data = tmp_path / "sft.json"
    rows = [{"instruction": f"Q{i}?", "input": "", "output": f"A{i}. \\boxed{{{i}}}", "system": ""} for i in range(4)]
    data.write_text(json.dumps(rows))
    extra = ["per_device_train_batch_size=2", "gradient_accumulation_steps=1", "max_length=64"]
    extra += ["gradient_checkpointing=false", "save_strategy=no", "learning_rate=1e-3"]
    holder: list = []
    summary = run_train(_cfg("sft", "sft", tiny, data, tmp_path / "sft", 2, extra), trainer_hook=holder.append)
    assert type(holder[0]).__name__ == "SFTTrainer" and summary["global_step"] == 2
    assert math.isfinite(summary["training_loss"]) and summary["training_loss"] > 0
    assert (tmp_path / "sft" / "model.safetensors").is_file()


def test_docs_and_shipped_configs():
    import yaml

    root = TESTS.parent
    doc = (root / "docs" / "train.md").read_text()
    for name in PRESETS:
        assert f"`{name}`" in doc, name
        for key in preset_settings(name):
            bare = key.removeprefix("trl.")
            assert f"`{bare}`" in doc, (name, key)
    for path in sorted((root / "configs" / "presets").glob("*.yaml")):
        cfg = resolve_config(config_file=path)
        assert cfg.preset in PRESETS and cfg.model and cfg.data and cfg.out, path
        assert path.name in doc or cfg.algo == "sft" or "coverage" in path.name
    for path in sorted((root / "configs" / "accelerate").glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        assert data["num_processes"] >= 2 and f"`{path.name}`" in doc, path
