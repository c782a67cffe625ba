r"""The SDPO teacher context, as the paper builds it (docs/paper.md 6.4, 13.4).

For every rollout ``i`` of a prompt, the demonstration is the first *other* rollout ``j != i`` of the same group
(the same dataset row: duplicated rows are separate groups) whose reward is at least ``success_reward_threshold``
(paper: 0.5). The teacher sees::

    <system messages of the prompt, if any>
    user: "{prompt}\nCorrect solution:\n\n{demonstration}\n\nCorrectly solve the original question."

rendered with the chat template (generation prompt on, the same ``enable_thinking`` as the student), followed by the
student's own response tokens. A rollout with no such sibling gets no teacher: its distillation loss is zero.

``c = s`` keeps the demonstration whole (thinking included); ``c = s\think``
(``remove_thinking_from_demonstration``) strips the thinking with :func:`remove_thinking_trace`, which also handles
chat templates that pre-open ``<think>`` (DeepSeek-R1-Distill): their responses hold only ``</think>``, and
everything up to it is thinking. TRL 1.16's own builder only removes paired ``<think>...</think>`` blocks, so a
pre-opened demonstration keeps all its thinking there; :class:`PaperTeacherContextBuilder` replaces it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from sdlens.prompts import PAPER_FEEDBACK_TEMPLATE, PAPER_REPROMPT_TEMPLATE, PAPER_SOLUTION_TEMPLATE

__all__ = [
    "PaperTeacherContextBuilder",
    "build_teacher_messages",
    "find_demonstrations",
    "remove_thinking_trace",
    "render_prompt",
    "tokenize_prompts",
]


_PAIRED_THINK = re.compile(r"<think>.*?</think>\s*", re.DOTALL)
_UP_TO_CLOSE = re.compile(r"^.*?</think>\s*", re.DOTALL)


def remove_thinking_trace(text: str) -> str:
    """The paper's ``_remove_thinking_trace``: drop every ``<think>...</think>`` block (and the whitespace after
    it), then everything up to a remaining ``</think>`` (a pre-opened template's response has no opening tag).

    Like the paper's code, step 2 runs unconditionally, and nothing else is stripped.
    """
    return _UP_TO_CLOSE.sub("", _PAIRED_THINK.sub("", text), count=1)


def build_teacher_messages(
    prompt: str | list[dict[str, Any]],
    demonstration: str | None = None,
    feedback: str | None = None,
    *,
    reprompt_template: str = PAPER_REPROMPT_TEMPLATE,
    solution_template: str = PAPER_SOLUTION_TEMPLATE,
    feedback_template: str = PAPER_FEEDBACK_TEMPLATE,
    remove_thinking: bool = False,
) -> str | list[dict[str, Any]]:
    """The teacher's prompt for a student prompt and a demonstration (and/or environment feedback).

    Chat prompts keep their earlier messages (system turns); the last message must be the user's, whose content
    becomes ``{prompt}``. A plain-text prompt gives a plain-text teacher prompt.
    """
    if demonstration is not None and remove_thinking:
        demonstration = remove_thinking_trace(demonstration)
    solution = "" if demonstration is None else solution_template.format(successful_previous_attempt=demonstration)
    fb = "" if not feedback else feedback_template.format(feedback_raw=feedback)
    if isinstance(prompt, str):
        return reprompt_template.format(prompt=prompt, solution=solution, feedback=fb)
    if not prompt or prompt[-1].get("role") != "user":
        role = prompt[-1].get("role") if prompt else None
        raise ValueError(f"a teacher prompt needs a conversation that ends with a user message, got role {role!r}")
    content = prompt[-1].get("content", "")
    if isinstance(content, list):  # content blocks
        content = " ".join(part.get("text", "") for part in content if part.get("type") == "text")
    text = reprompt_template.format(prompt=content, solution=solution, feedback=fb)
    return [*prompt[:-1], {"role": "user", "content": text}]


def find_demonstrations(
    rewards: list[float], group_size: int, *, threshold: float = 0.5, exclude_self: bool = True
) -> list[int | None]:
    """For each rollout, the index of its demonstration: the first rollout of its group (consecutive blocks of
    ``group_size``) with ``reward >= threshold``, other than itself when ``exclude_self``; ``None`` if there is none.
    """
    if group_size < 1 or len(rewards) % group_size:
        raise ValueError(f"{len(rewards)} rewards do not form groups of {group_size}")
    out: list[int | None] = []
    for i in range(len(rewards)):
        start = i - i % group_size
        demo = None
        for j in range(start, start + group_size):
            if (j != i or not exclude_self) and rewards[j] >= threshold:
                demo = j
                break
        out.append(demo)
    return out


def render_prompt(processing_class, prompt: str | list[dict[str, Any]], chat_template_kwargs: dict | None = None):
    """The prompt text the model sees: the chat template with the generation prompt (or the text itself)."""
    if isinstance(prompt, str):
        return prompt
    return processing_class.apply_chat_template(
        prompt, add_generation_prompt=True, tokenize=False, **(chat_template_kwargs or {})
    )


def tokenize_prompts(processing_class, prompts: list[Any], chat_template_kwargs: dict | None = None) -> list[list]:
    """Token ids of prompts, exactly as TRL's trainers tokenize the student's (chat template, generation prompt)."""
    if prompts and not isinstance(prompts[0], str):
        out = processing_class.apply_chat_template(
            conversation=prompts,
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
            **(chat_template_kwargs or {}),
        )
        return [list(ids) for ids in out["input_ids"]]
    return [list(ids) for ids in processing_class(text=prompts)["input_ids"]]


class PaperTeacherContextBuilder:
    """Drop-in replacement for TRL 1.16's ``SuccessfulRolloutTeacherContextBuilder`` (``trainer.teacher_context_
    builder``), building the teacher input exactly as the paper does.

    Differences from TRL's builder: :func:`remove_thinking_trace` instead of a paired-tags-only regex (pre-opened
    templates), no ``.strip()`` of the demonstration, the teacher prompt is truncated to ``max_reprompt_len`` tokens
    from the right (``truncation="right"``, the paper's ``reprompt_truncation``) or the left (TRL's), the
    demonstration is decoded from exactly the sibling's response tokens (its completion mask), and the built
    contexts are kept for inspection (``last_records``) and, on the main process, the first ``log_per_batch``
    teacher prompts of each generation batch are appended to ``log_path`` (JSONL).

    Reads from ``trainer.args``: ``success_reward_threshold``, ``dont_reprompt_on_self_success``,
    ``use_successful_as_teacher``, ``remove_thinking_from_demonstration``, ``reprompt_template``,
    ``solution_template``, ``feedback_template``, ``include_environment_feedback``,
    ``environment_feedback_only_without_solution``, ``max_reprompt_len``, ``chat_template_kwargs``.
    """

    def __init__(self, trainer, *, truncation: str = "right", log_path: str | Path | None = None, log_per_batch=1):
        if truncation not in ("left", "right"):
            raise ValueError(f"truncation must be 'left' or 'right', got {truncation!r}")
        self.trainer = trainer
        self.truncation = truncation
        self.log_path = Path(log_path) if log_path else None
        self.log_per_batch = int(log_per_batch)
        self.last_metrics: dict[str, float] = {}
        self.last_records: list[dict[str, Any]] = []
        self.batches_built = 0

    # -- pieces ---------------------------------------------------------------------------------------------------

    def _messages(self, prompt, demo: str | None, feedback: str | None):
        a = self.trainer.args
        return build_teacher_messages(
            prompt,
            demo,
            feedback,
            reprompt_template=a.reprompt_template,
            solution_template=a.solution_template,
            feedback_template=a.feedback_template,
            remove_thinking=bool(a.remove_thinking_from_demonstration),
        )

    def _truncate(self, ids: list[int]) -> list[int]:
        limit = self.trainer.args.max_reprompt_len
        if limit is None or len(ids) <= limit:
            return ids
        return ids[:limit] if self.truncation == "right" else ids[-limit:]

    # -- extension points (sdlens.mitigations.context overrides them) ----------------------------------------------

    def select_demonstrations(self, rewards: list[float], group: int) -> list[int | None]:
        """Each rollout's demonstration: an index into the gathered batch, or ``None`` (no teacher)."""
        a = self.trainer.args
        if not a.use_successful_as_teacher:
            return [None] * len(rewards)
        return find_demonstrations(
            rewards,
            group,
            threshold=float(a.success_reward_threshold),
            exclude_self=bool(a.dont_reprompt_on_self_success),
        )

    def teacher_messages(self, k: int, prompt, demo: str | None, feedback: str | None):
        """The teacher prompt of local rollout ``k`` (it has a demonstration and/or feedback)."""
        return self._messages(prompt, demo, feedback)

    # -- the TRL hook -----------------------------------------------------------------------------------------------

    def build(self, output: dict[str, Any], prompts: list[Any], rewards, feedbacks: list[Any] | None = None):
        import torch
        from trl.trainer.utils import pad

        tr = self.trainer
        args = tr.args
        acc = tr.accelerator
        device = acc.device
        tok = tr._tokenizer
        mode = "train" if tr.model.training else "eval"
        group = tr.num_generations if mode == "train" else tr.num_generations_eval
        completion_ids = output["completion_ids"]
        completion_mask = output["completion_mask"]
        n_local = len(prompts)
        start = acc.process_index * n_local

        # Rewards and responses of the whole generation batch: a group may span processes.
        all_rewards = acc.gather(rewards.float()).cpu().tolist()
        ids_p = acc.pad_across_processes(completion_ids, dim=1, pad_index=tok.pad_token_id)
        mask_p = acc.pad_across_processes(completion_mask, dim=1, pad_index=0)
        all_ids = acc.gather(ids_p).cpu()
        all_mask = acc.gather(mask_p).cpu().bool()
        total = len(all_rewards)

        threshold = float(args.success_reward_threshold)
        demos = self.select_demonstrations(all_rewards, group)
        feedbacks = list(feedbacks) if feedbacks is not None else [None] * n_local

        records: list[dict[str, Any]] = []
        teacher_prompts: list[Any] = []
        mask_local = torch.zeros(n_local, device=device)
        n_feedback_available = n_feedback_used = 0
        for k in range(n_local):
            g = start + k
            demo_idx = demos[g]
            raw_fb = feedbacks[k]
            has_fb = isinstance(raw_fb, str) and raw_fb.strip() != ""
            n_feedback_available += has_fb
            use_fb = bool(
                args.include_environment_feedback
                and has_fb
                and (not args.environment_feedback_only_without_solution or demo_idx is None)
            )
            n_feedback_used += use_fb
            demo_text = None
            if demo_idx is not None:
                demo_text = tok.decode(all_ids[demo_idx][all_mask[demo_idx]].tolist(), skip_special_tokens=True)
            active = demo_idx is not None or use_fb
            if active:
                mask_local[k] = 1.0
                teacher_prompts.append(self.teacher_messages(k, prompts[k], demo_text, raw_fb if use_fb else None))
            else:
                teacher_prompts.append(prompts[k])  # masked out: any input will do, use the student's
            records.append(
                {
                    "index": g,
                    "reward": all_rewards[g],
                    "demo_index": demo_idx,
                    "has_teacher": active,
                    "demonstration": demo_text,
                    "teacher_prompt": teacher_prompts[-1],
                }
            )

        ids = [
            self._truncate(x) for x in tokenize_prompts(tr.processing_class, teacher_prompts, tr.chat_template_kwargs)
        ]
        t_ids = [torch.tensor(x, dtype=torch.long, device=device) for x in ids]
        t_mask = [torch.ones(len(x), dtype=torch.long, device=device) for x in ids]
        t_ids = pad(t_ids, padding_value=tok.pad_token_id, padding_side="left")
        t_mask = pad(t_mask, padding_value=0, padding_side="left")
        for rec, x in zip(records, ids, strict=True):
            rec["teacher_prompt_tokens"] = len(x)

        # Batch-wide metrics (identical on every process), under TRL's names.
        n_groups = max(1, total // group)
        success_groups = sum(any(r >= threshold for r in all_rewards[s : s + group]) for s in range(0, total, group))
        with_demo = sum(d is not None for d in demos)
        active_all = acc.gather(mask_local).cpu()
        self.last_metrics = {
            "self_distillation/success_group_fraction": success_groups / n_groups,
            "self_distillation/success_sample_fraction": with_demo / max(1, total),
            "self_distillation/feedback_available_fraction": n_feedback_available / max(1, n_local),
            "self_distillation/feedback_used_fraction": n_feedback_used / max(1, n_local),
            "self_distillation/reprompt_sample_fraction": float(active_all.mean()) if total else 0.0,
        }
        self.last_records = records
        self.batches_built += 1
        self._log(records, ids)
        return {
            "teacher_input_ids": torch.cat([t_ids, completion_ids], dim=1),
            "teacher_attention_mask": torch.cat([t_mask, completion_mask], dim=1),
            "self_distillation_mask": mask_local,
        }

    def _log(self, records: list[dict[str, Any]], ids: list[list[int]]) -> None:
        tr = self.trainer
        if self.log_path is None or self.log_per_batch <= 0 or not tr.accelerator.is_main_process:
            return
        chosen = [i for i, r in enumerate(records) if r["has_teacher"]][: self.log_per_batch]
        if not chosen:
            chosen = [0][: self.log_per_batch] if records else []
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "a", encoding="utf-8") as fh:
            for i in chosen:
                r = records[i]
                line = {
                    "step": int(tr.state.global_step),
                    "index": r["index"],
                    "reward": r["reward"],
                    "demo_index": r["demo_index"],
                    "has_teacher": r["has_teacher"],
                    "teacher_prompt_tokens": r["teacher_prompt_tokens"],
                    "teacher_prompt": tr._tokenizer.decode(ids[i], skip_special_tokens=False),
                }
                fh.write(json.dumps(line, ensure_ascii=False) + "\n")
