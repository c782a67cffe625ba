"""Teacher-context builders of the follow-up methods (Purified OPSD, RLCSD, SSOPD).

Each extends sdlens' paper builder (:class:`sdlens.train.teacher.PaperTeacherContextBuilder`: same gathering across
processes, templates, truncation and prompt log) and leaves extra per-rollout tensors in ``extra_batch``; the
mitigation trainer adds them to the rollout batch (so TRL splits them into micro-batches with everything else).
"""

from __future__ import annotations

from typing import Any

from sdlens.mitigations.purified import without_question
from sdlens.mitigations.rlcsd import contrast_hints
from sdlens.mitigations.ssopd import ssopd_pairs
from sdlens.train.teacher import PaperTeacherContextBuilder, tokenize_prompts

__all__ = ["ContrastTeacherContextBuilder", "PurifiedTeacherContextBuilder", "SsopdTeacherContextBuilder"]


class _ExtraBuilder(PaperTeacherContextBuilder):
    """Keeps the gathered responses of the batch (``decode``) and tokenises extra teacher prompts (``teacher_ids``)."""

    def __init__(self, trainer, **kwargs: Any):
        super().__init__(trainer, **kwargs)
        self.extra_batch: dict[str, Any] = {}
        self._prompts: list[Any] = []

    def build(self, output: dict[str, Any], prompts: list[Any], rewards, feedbacks=None):
        acc = self.trainer.accelerator
        pad_id = self.trainer._tokenizer.pad_token_id
        ids = acc.pad_across_processes(output["completion_ids"], dim=1, pad_index=pad_id)
        mask = acc.pad_across_processes(output["completion_mask"], dim=1, pad_index=0)
        self._all_ids, self._all_mask = acc.gather(ids).cpu(), acc.gather(mask).cpu().bool()
        self._start = acc.process_index * len(prompts)
        self._prompts = list(prompts)
        self.extra_batch = {}
        result = super().build(output, prompts, rewards, feedbacks)
        self.add_extra(output)
        return result

    def add_extra(self, output: dict[str, Any]) -> None:
        """Fill ``extra_batch`` (after the paper's build; ``last_records`` holds its per-rollout records)."""

    def decode(self, j: int) -> str:
        return self.trainer._tokenizer.decode(self._all_ids[j][self._all_mask[j]].tolist(), skip_special_tokens=True)

    def teacher_ids(self, prompts: list[Any], completion_ids, completion_mask):
        """Teacher inputs for ``prompts`` (one per row of ``completion_ids``): left-padded prompt + response."""
        import torch
        from trl.trainer.utils import pad

        tr = self.trainer
        device = completion_ids.device
        ids = [self._truncate(x) for x in tokenize_prompts(tr.processing_class, prompts, tr.chat_template_kwargs)]
        t_ids = pad([torch.tensor(x, dtype=torch.long, device=device) for x in ids], tr._tokenizer.pad_token_id, "left")
        t_mask = pad([torch.ones(len(x), dtype=torch.long, device=device) for x in ids], 0, "left")
        return torch.cat([t_ids, completion_ids], dim=1), torch.cat([t_mask, completion_mask], dim=1)


class PurifiedTeacherContextBuilder(_ExtraBuilder):
    """The paper's teacher (question + demonstration) plus the reference-only teacher (``ref_input_ids``)."""

    def add_extra(self, output):
        prompts = []
        for k, rec in enumerate(self.last_records):
            if rec["has_teacher"]:
                prompts.append(self.teacher_messages(k, without_question(self._prompts[k]), rec["demonstration"], None))
            else:
                prompts.append(self._prompts[k])  # masked out
        ids, mask = self.teacher_ids(prompts, output["completion_ids"], output["completion_mask"])
        self.extra_batch = {"ref_input_ids": ids, "ref_attention_mask": mask}


class ContrastTeacherContextBuilder(_ExtraBuilder):
    """RLCSD: the positive hint is the paper's teacher prompt; up to ``max_negatives`` wrong siblings, in the same
    template, give ``contrast_input_ids`` ``[B, K, L]`` and ``contrast_mask`` ``[B, K]``."""

    def __init__(self, trainer, max_negatives: int = 4, **kwargs: Any):
        super().__init__(trainer, **kwargs)
        self.max_negatives = int(max_negatives)
        self.hints: list[tuple[int | None, list[int]]] = []

    def select_demonstrations(self, rewards, group):
        a = self.trainer.args
        threshold = float(a.success_reward_threshold)
        self.hints = contrast_hints(rewards, group, threshold=threshold, max_negatives=self.max_negatives)
        return [pos for pos, _ in self.hints]

    def add_extra(self, output):
        import torch

        K = self.max_negatives
        n = len(self._prompts)
        prompts, flags = [], torch.zeros(n, K, device=output["completion_ids"].device)
        for k in range(n):
            _, negs = self.hints[self._start + k]
            for slot in range(K):
                if slot < len(negs):
                    prompts.append(self.teacher_messages(k, self._prompts[k], self.decode(negs[slot]), None))
                    flags[k, slot] = 1.0
                else:
                    prompts.append(self._prompts[k])  # masked out
        c_ids = output["completion_ids"].repeat_interleave(K, dim=0)
        c_mask = output["completion_mask"].repeat_interleave(K, dim=0)
        ids, mask = self.teacher_ids(prompts, c_ids, c_mask)
        self.extra_batch = {
            "contrast_input_ids": ids.reshape(n, K, -1),
            "contrast_attention_mask": mask.reshape(n, K, -1),
            "contrast_mask": flags,
        }


class SsopdTeacherContextBuilder(_ExtraBuilder):
    """SSOPD: only each mixed group's longest wrong rollout gets a teacher, reading the shortest correct rollout;
    ``ssopd_frontier`` ``[B]`` holds the frontier weights."""

    def __init__(self, trainer, **kwargs: Any):
        super().__init__(trainer, **kwargs)
        self.frontier: list[float] = []

    def select_demonstrations(self, rewards, group):
        lengths = self._all_mask.sum(1).tolist()
        threshold = float(self.trainer.args.success_reward_threshold)
        demos, self.frontier = ssopd_pairs(rewards, lengths, group, threshold=threshold)
        return demos

    def add_extra(self, output):
        import torch

        n = len(self._prompts)
        local = self.frontier[self._start : self._start + n]
        self.extra_batch = {"ssopd_frontier": torch.tensor(local, device=output["completion_ids"].device)}
