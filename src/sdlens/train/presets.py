"""Named training presets: the paper's setups (docs/paper.md 5-6) on TRL 1.16's trainers.

A preset is a set of values for :class:`sdlens.train.config.TrainConfig` fields (plain keys) and for the TRL config
of the algorithm (``trl.<field>``: ``SDPOConfig``, ``GRPOConfig``, ``SFTConfig``), each with where it comes from.
Only what the paper fixes (or what TRL gets wrong for it) is set; everything else is TRL's default. ``docs/train.md``
has the same table with TRL's defaults beside.

Batch sizes are not TRL fields here: ``prompts_per_step`` (the paper's ``train_batch_size``, prompts per rollout
batch) and ``mini_batches_per_step`` (``train_batch_size / ppo_mini_batch_size``: optimizer steps per rollout batch)
are turned into TRL's ``gradient_accumulation_steps`` and ``steps_per_generation`` for the world size at launch (see
:func:`sdlens.train.config.derive_batches`). TRL's ``max_steps`` / ``save_steps`` / ``warmup_steps`` count optimizer
steps: with 2 mini-batches, the paper's 100 training steps are 200 TRL steps.
"""

from __future__ import annotations

from typing import Any

from sdlens.mitigations.presets import RESEARCH_PRESETS
from sdlens.prompts import PAPER_FEEDBACK_TEMPLATE, PAPER_REPROMPT_TEMPLATE, PAPER_SOLUTION_TEMPLATE
from sdlens.train.preset_types import Preset, Setting

__all__ = ["PRESETS", "Preset", "Setting", "get_preset", "preset_values"]


_COMMON_RL: dict[str, Setting] = {
    "prompts_per_step": Setting(256, "6.1 train_batch_size 256 prompts per step"),
    "mini_batches_per_step": Setting(2, "6.1 ppo_mini_batch_size 128: 2 optimizer steps per rollout batch"),
    "trl.per_device_train_batch_size": Setting(1, "6.1 ppo_micro_batch_size_per_gpu 1"),
    "trl.num_generations": Setting(8, "6.1 rollout.n 8"),
    "max_prompt_tokens": Setting(2048, "6.1 max_prompt_length 2048, filter_overlong_prompts (longer rows dropped)"),
    "trl.max_completion_length": Setting(20480, "6.1 max_response_length 20480"),
    "trl.temperature": Setting(1.0, "6.1 rollout temperature 1.0, top_p 1, top_k off (verl defaults)"),
    "trl.top_p": Setting(1.0, "6.1"),
    "trl.top_k": Setting(0, "6.1 (TRL's 0 = verl's -1: off)"),
    "enable_thinking": Setting(True, "6.1 apply_chat_template_kwargs.enable_thinking true"),
    "trl.weight_decay": Setting(0.01, "6.1 AdamW weight decay 0.01"),
    "trl.lr_scheduler_type": Setting("constant_with_warmup", "6.1 warm-up then constant LR"),
    "trl.warmup_steps": Setting(20, "6.1 lr_warmup_steps 10 training steps = 20 optimizer steps"),
    "trl.max_grad_norm": Setting(1.0, "6.1 grad clip 1.0"),
    "trl.beta": Setting(0.0, "6.1 use_kl_loss False, no KL in reward"),
    "trl.num_iterations": Setting(1, "6.1 ppo_epochs 1"),
    "trl.shuffle_dataset": Setting(True, "6.1 data.shuffle True"),
    "trl.max_steps": Setting(200, "5.1 100 training steps (x2 mini-batches)"),
    "trl.save_strategy": Setting("steps", "6.1 save_freq"),
    "trl.save_steps": Setting(20, "6.1 save_freq 10 training steps = 20 optimizer steps, all kept"),
    "trl.logging_steps": Setting(1, "log every optimizer step (TRL: 10)"),
    "trl.report_to": Setting("none", "no tracker unless asked (--set report_to=wandb)"),
    "reward": Setting("paper-reward", "8.4 last 100 chars, last boxed, exact else math-verify; 1/0"),
}

_SDPO: dict[str, Setting] = {
    "trl.learning_rate": Setting(1e-5, "6.1 SDPO LR 1e-5"),
    "trl.distillation_weight": Setting(1.0, "6.3 loss_mode sdpo: the distillation term only"),
    "trl.distillation_mode": Setting("topk_logits", "6.3 full_logit_distillation over the student's top-k"),
    "trl.distillation_topk": Setting(100, "6.3 distillation_topk 100"),
    "trl.distillation_add_tail": Setting(True, "6.3 distillation_add_tail True (k+1 categories)"),
    "trl.distillation_alpha": Setting(0.5, "6.3 alpha 0.5: generalized JSD"),
    "trl.distillation_is_clip": Setting(2.0, "6.3 is_clip 2.0"),
    "trl.teacher_model_kind": Setting("base", "6.3 teacher = frozen initial weights (EMA rate 0)"),
    "trl.teacher_update_rate": Setting(0.0, "6.3 teacher_update_rate 0.0"),
    "trl.use_successful_as_teacher": Setting(True, "6.4 demonstration = a successful sibling"),
    "trl.success_reward_threshold": Setting(0.5, "6.3 success_reward_threshold 0.5"),
    "trl.dont_reprompt_on_self_success": Setting(True, "6.3 the sibling must be another rollout"),
    "trl.remove_thinking_from_demonstration": Setting(False, "5.1 c = s: demonstration with its thinking"),
    "trl.reprompt_template": Setting(PAPER_REPROMPT_TEMPLATE, "6.4 reprompt_template (no trailing newline)"),
    "trl.solution_template": Setting(PAPER_SOLUTION_TEMPLATE, "6.4 solution_template (no trailing blank lines)"),
    "trl.feedback_template": Setting(PAPER_FEEDBACK_TEMPLATE, "6.4 feedback_template (unused)"),
    "trl.include_environment_feedback": Setting(False, "6.3 include_environment_feedback False"),
    "trl.max_reprompt_len": Setting(22528, "6.3 max_reprompt_len 22528"),
    "reprompt_truncation": Setting("right", "6.3 reprompt_truncation right"),
    "teacher_context": Setting("sdlens", "6.4 the paper's builder: pre-opened <think> fix, exact templates"),
    "trl.max_prompt_length": Setting(2048, "6.1 max_prompt_length 2048"),
    "trl.disable_dropout": Setting(True, "teacher and student score alike"),
    "chunked_distillation": Setting(True, "sdlens.losses: same loss without [B, T, V] logits (off: TRL's path)"),
}

_GRPO: dict[str, Setting] = {
    "trl.learning_rate": Setting(1e-6, "6.1 GRPO LR 1e-6"),
    "trl.scale_rewards": Setting("none", "6.2 norm_adv_by_std_in_grpo False: A = r - mean (Dr.GRPO)"),
    "trl.loss_type": Setting("dapo", "6.2 loss_agg_mode token-mean over the mini-batch tokens"),
    "trl.epsilon": Setting(0.2, "6.2 clip_ratio_low 0.2"),
    "trl.epsilon_high": Setting(0.28, "6.2 clip_ratio_high 0.28"),
    "trl.delta": Setting(3.0, "6.2 dual-clip c = 3 (TRL's delta caps the ratio: the same loss)"),
    "trl.mask_truncated_completions": Setting(False, "6.2 no overlong masking"),
    "trl.vllm_importance_sampling_correction": Setting(True, "6.1 rollout_is token (vLLM only)"),
    "trl.vllm_importance_sampling_mode": Setting("token_truncate", "6.1 rollout_is=token (truncated)"),
    "trl.vllm_importance_sampling_clip_max": Setting(2.0, "6.1 rollout_is_threshold 2.0"),
}

PRESETS: dict[str, Preset] = {}


def _add(p: Preset) -> None:
    PRESETS[p.name] = p


_add(
    Preset(
        "sdpo-paper",
        "sdpo",
        "The paper's main SDPO (c = s): JSD 0.5 over the top-100 + tail, IS clip 2, frozen initial teacher, "
        "demonstration = first successful other rollout, lr 1e-5, 8 rollouts, 256 prompts x 2 mini-batches.",
        {**_COMMON_RL, **_SDPO},
    )
)
_add(
    Preset(
        "sdpo-paper-nothink",
        "sdpo",
        "sdpo-paper with c = s\\think: the demonstration's thinking removed (pre-opened templates handled).",
        {"trl.remove_thinking_from_demonstration": Setting(True, "5.1 c = s\\think")},
        base="sdpo-paper",
    )
)
_add(
    Preset(
        "sdpo-paper-ema",
        "sdpo",
        "sdpo-paper with an EMA teacher: rate 0.05, applied once per training step (after its mini-batches).",
        {
            "trl.teacher_model_kind": Setting("ema", "5.3 EMA teacher ablation"),
            "trl.teacher_update_rate": Setting(0.05, "5.3 teacher_update_rate 0.05"),
            "ema_once_per_step": Setting(True, "13.5 applied once per step: teacher_sync_steps = mini-batches"),
        },
        base="sdpo-paper",
    )
)
_add(
    Preset(
        "grpo-paper",
        "grpo",
        "The paper's GRPO baseline: Dr.GRPO advantages (no std), clip 0.2 / 0.28, dual-clip 3, token-mean, lr 1e-6, "
        "no KL, 8 rollouts, 256 prompts x 2 mini-batches.",
        {**_COMMON_RL, **_GRPO},
    )
)
_COVERAGE = {
    "prompts_per_step": Setting(64, "7.2 run_math_*_small_question.sh train_batch_size 64"),
    "mini_batches_per_step": Setting(2, "7.2 ppo_mini_batch_size 32"),
    "enable_thinking": Setting(False, "7.2 Qwen3-8B thinking OFF"),
}
_add(
    Preset(
        "sdpo-coverage",
        "sdpo",
        "The task-coverage runs (section 6.2, seen_*.parquet): sdpo-paper with 64 prompts x 2 mini-batches, "
        "thinking off.",
        dict(_COVERAGE),
        base="sdpo-paper",
    )
)
_add(
    Preset(
        "grpo-coverage",
        "grpo",
        "The task-coverage runs (section 6.2): grpo-paper with 64 prompts x 2 mini-batches, thinking off.",
        dict(_COVERAGE),
        base="grpo-paper",
    )
)
_add(
    Preset(
        "sft",
        "sft",
        "Guided / unguided SFT (section 4) on correct trajectories. The paper does not give its SFT "
        "hyperparameters (LLaMA-Factory is likely); these are common full-SFT values, loss on the response only.",
        {
            "trl.learning_rate": Setting(1e-5, "not in the paper: a common full-SFT LR"),
            "trl.num_train_epochs": Setting(3, "not in the paper (LLaMA-Factory's example default)"),
            "trl.lr_scheduler_type": Setting("cosine", "not in the paper (LLaMA-Factory's example default)"),
            "trl.warmup_steps": Setting(0.1, "not in the paper: 10% warm-up"),
            "trl.per_device_train_batch_size": Setting(1, "long traces (~12k tokens for D_ug)"),
            "trl.gradient_accumulation_steps": Setting(8, "not in the paper"),
            "trl.max_length": Setting(16384, "4.1 D_ug traces ~12k tokens must fit"),
            "trl.completion_only_loss": Setting(True, "train on the response only (LLaMA-Factory's default)"),
            "question_suffix": Setting("", "4.1 alpaca instructions already end with the paper's instruction"),
            "trl.logging_steps": Setting(1, "log every optimizer step (TRL: 10)"),
            "trl.save_strategy": Setting("epoch", "a checkpoint per epoch"),
            "trl.report_to": Setting("none", "no tracker unless asked"),
        },
    )
)

# the research presets (docs/mitigations.md): sdpo-paper with one research option of the SDPO trainer switched on
for _preset in RESEARCH_PRESETS:
    _add(_preset)


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; available: {', '.join(PRESETS)}") from None


def preset_values(name: str) -> dict[str, Any]:
    """The flat ``{key: value}`` of a preset, its base's first."""
    p = get_preset(name)
    out = preset_values(p.base) if p.base else {}
    out.update({k: s.value for k, s in p.settings.items()})
    return out


def preset_settings(name: str) -> dict[str, Setting]:
    """Like :func:`preset_values` with the reasons."""
    p = get_preset(name)
    out = preset_settings(p.base) if p.base else {}
    out.update(p.settings)
    return out
