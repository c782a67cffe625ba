"""The `paper-reward` grader reproduces the paper's training reward (docs/paper.md 8.4), quirks included."""

from __future__ import annotations

import signal

import pytest

from sdlens.grading import get_grader
from test_grading_regression import REGRESSION


def paper_reference(response: str, gt: str) -> bool:
    """docs/paper.md 8.4 restated independently, run in this (main) thread: last 100 characters, last ``\\boxed{``
    with brace counting, exact string match, else math-verify parse/verify under a 5 s SIGALRM."""
    tail = response[-100:]
    start = tail.rfind("\\boxed{")
    pred = None
    if start >= 0:
        depth, pred = 0, ""
        for pos in range(start, len(tail)):
            depth += {"{": 1, "}": -1}.get(tail[pos], 0)
            if tail[pos] == "}" and depth == 0:
                pred = tail[start + len("\\boxed{") : pos]
                break
    correct = pred == gt
    if not correct and pred:
        from math_verify import parse, verify

        def alarm(*_: object) -> None:
            raise TimeoutError

        old = signal.signal(signal.SIGALRM, alarm)
        signal.alarm(5)
        try:
            correct = bool(verify(parse(gt), parse(pred)))
        except Exception:
            correct = False
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, old)
    return correct


PAPER_CASES = [
    (r"\boxed{5}" + "x" * 100, "5", False),  # the box is before the last 100 characters
    (r"<think>\boxed{5}</think>", "5", True),  # not think-aware: a box in thinking counts
    (r"\boxed{ 5}", "5", True),  # no exact match, math-verify says equal
    (r"\boxed{5", "5", False),  # unterminated: ""
    (r"\boxed{}", "5", False),
    ("no box", "5", False),
    (r"\boxed{5}", "$5$", True),
    (r"\boxed{0.5}", r"\frac{1}{2}", True),
    # quirks of raw parse() without the boxed wrapping:
    (r"\boxed{\frac12}", "0.5", False),  # raw "\frac12" does not parse
    (r"\boxed{3x+4y+14=0}", "3x-y+13=0", True),  # Math-Verify #60: both parse as "0"
]


@pytest.fixture(scope="module")
def paper():
    return get_grader("paper-reward")


@pytest.mark.parametrize(("response", "gold", "expected"), PAPER_CASES)
def test_paper_cases(paper, response: str, gold: str, expected: bool) -> None:
    assert paper.grade([(response, gold)])[0].correct is expected


def test_matches_an_independent_restatement(paper) -> None:
    items = [(r, g) for r, g, _ in PAPER_CASES] + [(r, g) for r, g, _, _ in REGRESSION]
    items += [
        ("Long reasoning... " * 20 + r"so the answer is \boxed{" + a + "}.", g)
        for _, g, _, _ in REGRESSION[:12]
        for a in ("12", g)
    ]
    got = [v.correct for v in paper.grade(items)]
    want = [paper_reference(r, g) for r, g in items]
    assert got == want


def test_extracted_is_the_papers_pred(paper) -> None:
    v1, v2, v3 = paper.grade([(r"x \boxed{7}", "7"), (r"\boxed{7", "7"), ("none", "7")])
    assert (v1.extracted, v2.extracted, v3.extracted) == ("7", "", None)


def test_the_two_graders_differ_where_documented(paper) -> None:
    mv = get_grader("math-verify")
    items = [
        (r"<think>\boxed{5}</think>I give up.", "5"),
        (r"\boxed{3x+4y+14=0}", "3x-y+13=0"),
        (r"\boxed{\frac12}", "0.5"),
    ]
    assert [v.correct for v in paper.grade(items)] == [True, True, False]
    assert [v.correct for v in mv.grade(items)] == [False, False, True]
