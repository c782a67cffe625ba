r"""The four conditioning contexts of the paper's section 3 and its hint prompt (docs/paper.md 3.2, 13.3).

=============  =========================================================================================
``none``       unguided: the problem as it is (the round-0 samples are kept, none regenerated)
``s``          the model's own first correct unguided response, whole (thinking included)
``s-nothink``  the same response with its thinking removed (:func:`remove_thinking_trace`, which also
               handles templates that pre-open ``<think>``: everything up to ``</think>`` is thinking)
``regen``      the "best" response of the ``s`` round: its first correct response, else its first
=============  =========================================================================================

The hint replaces the last user message's content with exactly the paper's ``build_augmented_prompt``::

    {content}\n\nCorrect solution: {solution}\n\nCorrectly solve the original question.

Note the section-3 hint puts ``Correct solution: {s}`` on one line, unlike the SDPO teacher template
(``\nCorrect solution:\n\n{s}``, :mod:`sdlens.train.teacher`): the paper's two code paths differ and each is kept.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sdlens.experiments.config import CONTEXTS, HINTED_CONTEXTS
from sdlens.prompts import PAPER_HINT_TEMPLATE
from sdlens.schema import Problem
from sdlens.train.teacher import remove_thinking_trace

__all__ = ["CONTEXTS", "HINTED_CONTEXTS", "context_solution", "hint_prompt", "with_hint"]


def hint_prompt(content: str, solution: str) -> str:
    """The paper's section-3 hint prompt for a user message ``content`` and a solution text."""
    return PAPER_HINT_TEMPLATE.format(content=content, solution=solution)


def context_solution(solution: str, context: str) -> str:
    """The solution text a context shows: thinking stripped for ``s-nothink``, whole otherwise."""
    _check(context)
    return remove_thinking_trace(solution) if context == "s-nothink" else solution


def with_hint(problem: Problem, solution: str, context: str) -> Problem:
    """``problem`` with its last user message replaced by the hint prompt for ``context``.

    The id is kept (samples of every context are compared problem by problem); ``meta`` records the context and the
    solution shown (``hint_context``, ``hint_solution``). ``s-nothink`` strips the thinking from ``solution`` here,
    so callers pass the same raw response for ``s`` and ``s-nothink``. ``none`` returns the problem unchanged but
    for the recorded context.
    """
    _check(context)
    if context == "none":
        return replace(problem, meta={**problem.meta, "hint_context": "none"})
    shown = context_solution(solution, context)
    messages = [dict(m) for m in problem.messages]
    if not messages or messages[-1].get("role") != "user":
        role = messages[-1].get("role") if messages else None
        raise ValueError(f"problem {problem.id}: a hint needs messages ending with a user turn, got role {role!r}")
    messages[-1]["content"] = hint_prompt(_text(messages[-1].get("content", "")), shown)
    meta: dict[str, Any] = {**problem.meta, "hint_context": context, "hint_solution": shown}
    return replace(problem, messages=messages, meta=meta)


def _text(content: Any) -> str:
    if isinstance(content, list):  # content blocks
        return " ".join(part.get("text", "") for part in content if part.get("type") == "text")
    return str(content)


def _check(context: str) -> None:
    if context not in CONTEXTS:
        raise ValueError(f"unknown context {context!r}; choose from {', '.join(CONTEXTS)}")
