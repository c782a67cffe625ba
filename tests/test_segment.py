from __future__ import annotations

import pytest

from sdlens.epistemic.segment import scope_text, split_thinking


@pytest.mark.parametrize(
    ("text", "thinking", "answer"),
    [
        ("<think>a b</think>\n\\boxed{1}", "a b", "\n\\boxed{1}"),  # paired
        ("a b\n</think>\n\nok", "a b\n", "\n\nok"),  # template pre-opened <think>: only </think> appears
        ("<think>still going", "still going", ""),  # truncated inside thinking
        ("no tags at all", "", "no tags at all"),
        ("pre <think>x</think>y</think>z", "x", "y</think>z"),  # first closing tag ends thinking
        ("</think>", "", ""),
        ("", "", ""),
    ],
)
def test_split_thinking(text: str, thinking: str, answer: str) -> None:
    assert split_thinking(text) == (thinking, answer)
    assert scope_text(text, "full") == text
    assert scope_text(text, "thinking") == thinking
    assert scope_text(text, "answer") == answer
