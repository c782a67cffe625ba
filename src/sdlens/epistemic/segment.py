"""Split a response into its thinking part and its answer part.

Rules (one place, used by every stage):
- ``<think>...</think>``: thinking is between the first ``<think>`` and the first ``</think>`` after it; the
  answer is everything after that ``</think>``.
- a pre-opened template (DeepSeek-R1-Distill, ``enable_thinking`` chat templates) leaves only ``</think>`` in the
  response: everything before it is thinking.
- ``<think>`` without ``</think>`` (truncated inside thinking): everything after ``<think>`` is thinking and there
  is no answer.
- no tag at all: no thinking, the whole response is the answer.
Text before an opening ``<think>`` belongs to neither part.
"""

from __future__ import annotations

from enum import StrEnum

OPEN = "<think>"
CLOSE = "</think>"


class Scope(StrEnum):
    full = "full"
    thinking = "thinking"
    answer = "answer"


def split_bounds(text: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """Character bounds ``((think_start, think_end), (answer_start, answer_end))`` of the two parts."""
    close = text.find(CLOSE)
    if close >= 0:
        open_ = text.find(OPEN, 0, close)
        start = open_ + len(OPEN) if open_ >= 0 else 0
        return (start, close), (close + len(CLOSE), len(text))
    open_ = text.find(OPEN)
    if open_ >= 0:
        return (open_ + len(OPEN), len(text)), (len(text), len(text))
    return (0, 0), (0, len(text))


def split_thinking(text: str) -> tuple[str, str]:
    """``(thinking, answer)`` of a response."""
    (ts, te), (as_, ae) = split_bounds(text)
    return text[ts:te], text[as_:ae]


def scope_text(text: str, scope: Scope | str) -> str:
    scope = Scope(scope)
    if scope is Scope.full:
        return text
    thinking, answer = split_thinking(text)
    return thinking if scope is Scope.thinking else answer
