r"""Final-answer extraction from a model response.

Rules (documented in docs/grading.md):

- Think-aware: the answer is looked for in the *answer part* of the response as split by
  :func:`sdlens.epistemic.segment.split_thinking` (text after ``</think>``; a pre-opened template that leaves only
  ``</think>`` works; ``<think>`` without ``</think>`` means the response was cut inside its thinking and has no
  answer part). ``think_aware=False`` searches the whole response.
- ``boxed`` (default): the content of the last complete, top-level ``\boxed{...}`` or ``\fbox{...}``, braces
  matched (nested braces fine, ``\{`` / ``\}`` escapes skipped). An unterminated box after the last complete one
  means *no answer*: an earlier box is never credited instead. No box: ``None``. An empty box gives ``""``.
- ``answer-line``: the DAPO-style ``Answer: ...`` line (the last one), with ``$...$`` / ``\boxed{}`` / a trailing
  period stripped.
- ``boxed-or-answer-line``: the boxed rule; when the answer part contains no box command at all, the
  ``Answer:`` line.
- :func:`paper_last_boxed` is the paper's training-reward extraction, reproduced exactly (docs/paper.md 8.4).
"""

from __future__ import annotations

import re
from enum import StrEnum

from sdlens.epistemic.segment import split_thinking

__all__ = [
    "ExtractMode",
    "extract_answer",
    "extract_answer_line",
    "last_boxed",
    "normalize_answer_text",
    "paper_last_boxed",
]


class ExtractMode(StrEnum):
    boxed = "boxed"
    answer_line = "answer-line"
    boxed_or_answer_line = "boxed-or-answer-line"


_BOX = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_BRACES = re.compile(r"[\\{}]")
_SPACE = " \t\r\n"


def _match_brace(text: str, open_at: int) -> int:
    """Index of the ``}`` closing the ``{`` at ``open_at``, or -1 when it is never closed."""
    depth = 0
    skip_until = -1
    for m in _BRACES.finditer(text, open_at):
        p = m.start()
        if p < skip_until:
            continue
        ch = text[p]
        if ch == "\\":
            skip_until = p + 2  # the next character is escaped (``\{``, ``\}``, ``\\``)
        elif ch == "{":
            depth += 1
        else:
            depth -= 1
            if depth == 0:
                return p
    return -1


def last_boxed(text: str) -> str | None:
    r"""Content (stripped) of the last complete top-level ``\boxed{}`` / ``\fbox{}`` in ``text``.

    ``None`` when there is no box, or when the last box command is unterminated (never an earlier box instead).
    A box command not followed by ``{`` (e.g. prose mentioning ``\boxed``) is not a box.
    """
    last: str | None = None
    pos = 0
    n = len(text)
    while True:
        m = _BOX.search(text, pos)
        if m is None:
            return last
        k = m.end()
        while k < n and text[k] in _SPACE:
            k += 1
        if k >= n:
            return None  # a trailing "\boxed" with nothing after it: the answer was cut off
        if text[k] != "{":
            pos = m.end()
            continue
        end = _match_brace(text, k)
        if end < 0:
            return None  # unterminated: whatever follows is inside it, so there is no final answer
        last = text[k + 1 : end].strip()
        pos = end + 1


_ANSWER_LINE = re.compile(r"(?im)(?<![A-Za-z])answer\s*:[ \t]*(.*)$")


def extract_answer_line(text: str) -> str | None:
    """The value of the last DAPO-style ``Answer: ...`` line, or ``None`` when there is none."""
    last = None
    for m in _ANSWER_LINE.finditer(text):
        last = m
    if last is None:
        return None
    value = last.group(1).strip().strip("*").strip()
    if _BOX.search(value):
        boxed = last_boxed(value)
        if boxed is not None:
            value = boxed
    value = normalize_answer_text(value.rstrip(".").rstrip())
    return value.rstrip(".").rstrip()


def extract_answer(
    response: str, mode: ExtractMode | str = ExtractMode.boxed, *, think_aware: bool = True
) -> str | None:
    """The final answer of ``response`` under ``mode`` (``None`` = nothing extracted, ``""`` = empty box)."""
    mode = ExtractMode(mode)
    text = split_thinking(response)[1] if think_aware else response
    if mode is ExtractMode.boxed:
        return last_boxed(text)
    if mode is ExtractMode.answer_line:
        return extract_answer_line(text)
    if _BOX.search(text):
        return last_boxed(text)
    return extract_answer_line(text)


_DELIMS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))


def normalize_answer_text(s: str) -> str:
    r"""Strip whitespace and enclosing math delimiters (``$..$``, ``$$..$$``, ``\(..\)``, ``\[..\]``)."""
    s = s.strip()
    changed = True
    while changed:
        changed = False
        for a, b in _DELIMS:
            if len(s) >= len(a) + len(b) and s.startswith(a) and s.endswith(b):
                inner = s[len(a) : len(s) - len(b)]
                if a == "$" and "$" in inner:
                    continue  # "$a$ and $b$" is not one enclosed expression
                s = inner.strip()
                changed = True
                break
    return s


def gold_answer_text(gold: str) -> str:
    r"""The ground truth as an expression: the content of its last box if it has one, delimiters stripped."""
    if _BOX.search(gold):
        boxed = last_boxed(gold)
        if boxed:
            return normalize_answer_text(boxed)
    return normalize_answer_text(gold)


_PAPER_BOX = "\\boxed{"


def paper_last_boxed(text: str) -> str | None:
    r"""The paper's reward extraction (docs/paper.md 8.4) on ``text`` as given (the caller takes the last 100 chars).

    The last ``\boxed{`` found by a reverse search, braces counted naively from it (no escapes); its content, or
    ``""`` when the braces never close; ``None`` when there is no ``\boxed{`` at all.
    """
    idx = text.rfind(_PAPER_BOX)
    if idx < 0:
        return None
    depth = 0
    for i in range(idx, len(text)):
        ch = text[i]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[idx + len(_PAPER_BOX) : i]
    return ""
