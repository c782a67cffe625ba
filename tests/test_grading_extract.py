"""Answer extraction: last complete box, think-aware, unterminated boxes, the Answer: line, the paper's rule."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sdlens.epistemic.segment import split_thinking
from sdlens.grading.extract import (
    extract_answer,
    extract_answer_line,
    gold_answer_text,
    last_boxed,
    normalize_answer_text,
    paper_last_boxed,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"so \boxed{5}", "5"),
        (r"\boxed{5} hmm, actually \boxed{7}.", "7"),  # last box wins
        (r"\boxed{\frac{1}{2}}", r"\frac{1}{2}"),  # nested braces
        (r"\boxed{\{1, 2\}}", r"\{1, 2\}"),  # escaped braces do not count
        (r"\boxed{a\\}", "a\\\\"),  # an escaped backslash does not escape the brace after it
        (r"\fbox{12}", "12"),
        (r"\boxed {3}", "3"),  # space before the brace
        (r"\boxed{ 4 }", "4"),  # stripped
        (r"\boxed{}", ""),  # empty box: extracted, but empty
        ("no box here", None),
        (r"\boxed{5} then \boxed{7", None),  # unterminated last box: never credit the earlier one
        (r"\boxed{5} and a dangling \boxed", None),
        (r"\boxed{\boxed{8}}", r"\boxed{8}"),  # the outer box is the top-level one
        (r"the \boxed command, then \boxed{9}", "9"),  # a mention without a brace is not a box
        (r"\boxedx{1} \boxed{2}", "2"),  # \boxedx is another command
        (r"\boxed{1} \fbox{2} \boxed{3}", "3"),
    ],
)
def test_last_boxed(text: str, expected: str | None) -> None:
    assert last_boxed(text) == expected


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (r"<think>maybe \boxed{5}</think>The answer is \boxed{6}.", "6"),
        (r"<think>maybe \boxed{5}</think>I am not sure.", None),  # a box only in thinking does not count
        (r"pre-opened template: \boxed{5}</think> final \boxed{7}", "7"),
        (r"pre-opened template: \boxed{5}</think> no final box", None),
        (r"<think>cut off while thinking \boxed{5}", None),  # truncated inside thinking: no answer part
        (r"no tags at all \boxed{3}", "3"),
    ],
)
def test_think_aware(response: str, expected: str | None) -> None:
    assert extract_answer(response) == expected


def test_think_split_is_the_segment_rule() -> None:
    for response in [r"a</think>\boxed{1}", r"<think>x</think>\boxed{2}", r"<think>\boxed{3}", r"\boxed{4}"]:
        assert extract_answer(response) == last_boxed(split_thinking(response)[1])
    assert extract_answer(r"<think>\boxed{5}", think_aware=False) == "5"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("blah\nAnswer: 42", "42"),
        ("Answer: 1\nmore work\nAnswer: $\\frac{1}{2}$.", r"\frac{1}{2}"),
        ("**Final Answer:** \\boxed{7}", "7"),
        ("answer:   x+1  ", "x+1"),
        ("no such line", None),
        ("Answer:", ""),
    ],
)
def test_answer_line(text: str, expected: str | None) -> None:
    assert extract_answer_line(text) == expected


def test_modes() -> None:
    r = "Work.\nAnswer: 12"
    assert extract_answer(r, "boxed") is None
    assert extract_answer(r, "answer-line") == "12"
    assert extract_answer(r, "boxed-or-answer-line") == "12"
    assert extract_answer(r"\boxed{3}" + "\nAnswer: 12", "boxed-or-answer-line") == "3"
    with pytest.raises(ValueError):
        extract_answer(r, "nonsense")


def test_normalization_and_gold() -> None:
    assert normalize_answer_text(" $\\frac12$ ") == r"\frac12"
    assert normalize_answer_text("$$x$$") == "x"
    assert normalize_answer_text(r"\(3\)") == "3"
    assert normalize_answer_text("$a$ and $b$") == "$a$ and $b$"
    assert gold_answer_text(r"$\boxed{5}$") == "5"
    assert gold_answer_text("5") == "5"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"\boxed{5}", "5"),
        (r"\boxed{5} \boxed{6}", "6"),
        (r"\boxed{5} \boxed{6", ""),  # unterminated: the paper returns ""
        ("nothing", None),
        (r"\fbox{5}", None),  # the paper only knows \boxed{
        (r"\boxed{\{1\}}", r"\{1\}"),  # naive counting happens to balance here
        (r"\boxed{\}}", "\\"),  # ... and not here: the escaped brace closes the box
    ],
)
def test_paper_last_boxed(text: str, expected: str | None) -> None:
    assert paper_last_boxed(text) == expected


def test_one_megabyte_responses_are_fast() -> None:
    filler = "word " * 200_000
    t0 = time.perf_counter()
    assert extract_answer(filler + r"\boxed{5}") == "5"
    assert extract_answer(filler + r"\boxed{5} \boxed{" + "x{" * 100_000) is None
    assert extract_answer(r"\boxed{" + "1" * 1_000_000 + "}") == "1" * 1_000_000
    assert extract_answer("<think>" + filler) is None
    assert time.perf_counter() - t0 < 2.0


_content = st.text(alphabet=st.sampled_from(list("0123456789+-x ^_abc\\")), max_size=20).filter(
    lambda s: not s.endswith("\\")
)


@given(prefix=st.text(alphabet=st.sampled_from(list("abc .,$\n")), max_size=30), content=_content)
def test_property_last_box_is_found(prefix: str, content: str) -> None:
    assert last_boxed(prefix + r"\boxed{" + content + "} done") == content.strip()


@given(content=_content, tail=st.text(alphabet=st.sampled_from(list("ab {0")), max_size=10))
def test_property_unterminated_tail_never_credits_earlier(content: str, tail: str) -> None:
    # nothing after the last "\boxed{" closes it, so there is no final answer (not the earlier "1")
    assert last_boxed(r"\boxed{1} then \boxed{" + content + tail) is None
