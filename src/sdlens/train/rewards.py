r"""Reward functions for TRL's trainers, from the sdlens graders (docs/paper.md 8.4).

``paper-reward`` is the paper's training reward exactly (the last 100 characters, the last ``\boxed{}``, exact match
else math-verify with a 5 s limit; 1 or 0). ``math-verify`` is sdlens' default grader (think-aware extraction,
math-verify). Both run math-verify only in worker processes, so they are safe in TRL's threads and in every rank of
a distributed run (each rank grades its own rollouts with its own pool).

A reward may also be any callable with TRL's reward signature, named ``package.module:function``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sdlens.imports import import_callable

__all__ = ["GraderReward", "completion_text", "make_reward"]


def completion_text(completion: Any) -> str:
    """The text of a TRL completion: a string, or a list of chat messages (the assistant turns joined)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        parts = []
        for m in completion:
            content = m.get("content", "") if isinstance(m, dict) else str(m)
            if isinstance(content, list):
                content = "".join(c.get("text", "") for c in content if isinstance(c, dict))
            parts.append(content or "")
        return "".join(parts)
    return str(completion)


class GraderReward:
    """``reward(prompts, completions, answer, **kwargs) -> list[float]``: 1.0 where the sdlens grader accepts the
    completion against the row's ground truth (column ``answer``), else 0.0. Rows without an answer get 0.0.

    The grader (and its worker pool) is created on first use in the calling process.
    """

    def __init__(self, grader: str = "paper-reward", *, workers: int | None = None, timeout: int = 5):
        self.grader_name = grader
        self.workers = workers
        self.timeout = timeout
        self.__name__ = f"reward_{grader.replace('-', '_')}"  # TRL names its metrics after this
        self._grader = None
        self.calls = 0

    @property
    def grader(self):
        if self._grader is None:
            from sdlens.grading import get_grader

            options: dict[str, Any] = {"workers": self.workers}
            if self.grader_name == "math-verify":
                options["timeout"] = self.timeout
            self._grader = get_grader(self.grader_name, **options)
        return self._grader

    def __call__(self, prompts=None, completions=None, answer=None, **kwargs) -> list[float]:
        completions = list(completions or [])
        answers = list(answer) if answer is not None else [None] * len(completions)
        items = [(completion_text(c), None if a is None else str(a)) for c, a in zip(completions, answers, strict=True)]
        self.calls += 1
        return [1.0 if v.correct else 0.0 for v in self.grader.grade(items)]


def make_reward(spec: str, *, workers: int | None = None, timeout: int = 5) -> Callable[..., list[float]]:
    """A reward function by name: a grader (``paper-reward``, ``math-verify``, any registered grader) or
    ``package.module:function`` (a callable with TRL's reward signature)."""
    if ":" in spec:
        return import_callable(spec, "the reward")
    from sdlens.grading import available_graders

    if spec not in available_graders():
        raise ValueError(
            f"unknown reward {spec!r}: a grader ({', '.join(available_graders())}) or package.module:function"
        )
    return GraderReward(spec, workers=workers, timeout=timeout)
