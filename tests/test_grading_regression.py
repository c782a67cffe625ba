"""The regression set: expected verdicts of the default grader, including known hard cases from Math-Verify's
issue tracker (#14, #60, #70). Where math-verify itself is wrong the case is an xfail naming the limitation
(also listed in docs/grading.md), never a silently adjusted expectation."""

from __future__ import annotations

import pytest

from sdlens.grading import get_grader

MV_LIMITATION = "math-verify limitation: compares tiny values numerically (rounded), so they look equal"

# (response, gold, expected verdict, xfail reason or None)
REGRESSION: list[tuple[str, str, bool, str | None]] = [
    # ordinary answers and equivalent forms
    (r"so \boxed{5}", "5", True, None),
    (r"\boxed{104}", "105", False, None),
    (r"\boxed{5.0}", "5", True, None),
    (r"\boxed{\frac12}", "0.5", True, None),
    (r"\boxed{-\frac{3}{4}}", "-0.75", True, None),
    (r"\boxed{\frac{3}{4}}", "-0.75", False, None),
    (r"\boxed{\sqrt{18}}", r"3\sqrt{2}", True, None),
    (r"\boxed{2\sqrt{3}}", r"\sqrt{12}", True, None),
    (r"\boxed{(x+1)^2}", "x^2+2x+1", True, None),
    (r"\boxed{x^2}", "x^3", False, None),
    (r"\boxed{[1,3)}", "[1, 3)", True, None),
    (r"\boxed{(1,3]}", "[1, 3)", False, None),
    (r"\boxed{\{3,2,1\}}", r"\{1,2,3\}", True, None),
    (r"\boxed{C}", r"\text{(C)}", True, None),
    (r"\boxed{1000}", "1,000", True, None),
    (r"\boxed{x=2, y=3}", "x=2, y=3", True, None),
    (r"\boxed{\dfrac{\pi}{4}}", r"\frac{\pi}{4}", True, None),
    (r"\boxed{0.333}", r"\frac13", False, None),
    (r"\boxed{2021}", r"\pm 2021", False, None),
    (r"\boxed{\text{Evelyn}}", r"\text{Evelyn}", True, None),
    # Math-Verify issue #14
    (r"\boxed{\frac{1}{2006!}}", r"\frac{1}{2004!}", False, MV_LIMITATION),
    (r"\boxed{\frac{1}{2^{98}}}", r"\frac{1}{2^{99}}", False, MV_LIMITATION),
    (r"\boxed{n=1, 2, 3}", "n=2, 3, 4", False, None),
    (r"\boxed{n=2,3,4}", "n=2, 3, 4", True, None),
    (r"\boxed{D = (0, 1.5)}", "D = (0, 1)", False, None),
    (r"\boxed{1 + \frac{1}{e}}", r"1 - \frac{1}{\mathrm{e}}", False, None),
    # Math-Verify issue #60: two different lines (raw parse() reads both as "0"; the boxed wrapping does not)
    (r"\boxed{3x+4y+14=0}", "3x-y+13=0", False, None),
    (r"\boxed{3x + 4y + 14=0}", "3*x-1*y+13=0", False, None),
    (r"\boxed{y=3x+13}", "3x-y+13=0", True, None),
    # Math-Verify issue #70: unboxed gold answers, with and without $...$
    (r"\boxed{5}", "5", True, None),
    (r"\boxed{0.5}", r"$\frac{1}{2}$", True, None),
    (r"\boxed{\frac{9}{7}}", r"\dfrac{9}{7}", True, None),
    (r"\boxed{\frac{9}{7}}", r"\frac{9}{8}", False, None),
    (r"\boxed{5}", r"\boxed{5}", True, None),
    (r"\boxed{5}", "$5$", True, None),
    # extraction rules
    (r"<think>\boxed{5}</think>The answer is \boxed{6}", "6", True, None),
    (r"<think>\boxed{5}</think>The answer is \boxed{6}", "5", False, None),
    (r"pre-opened: \boxed{5}</think> so \boxed{7}", "7", True, None),
    (r"<think>cut off inside thinking \boxed{5}", "5", False, None),
    (r"\boxed{5}, no wait, \boxed{7}", "5", False, None),
    (r"\boxed{5} and then \boxed{", "5", False, None),
    (r"\boxed{}", "5", False, None),
    ("The answer is 5.", "5", False, None),
    (r"\fbox{5}", "5", True, None),
]


@pytest.fixture(scope="module")
def verdicts():
    grader = get_grader("math-verify", timeout=5)
    return grader.grade([(r, g) for r, g, _, _ in REGRESSION])


@pytest.mark.parametrize("case", range(len(REGRESSION)), ids=[f"{r[:30]}|{g[:20]}" for r, g, _, _ in REGRESSION])
def test_regression_verdict(verdicts, case: int) -> None:
    response, gold, expected, limitation = REGRESSION[case]
    if limitation:
        pytest.xfail(limitation)
    v = verdicts[case]
    assert v.correct is expected, (response, gold, v)


def test_known_limitations_still_fail(verdicts) -> None:
    """If math-verify fixes #14, these start passing and this test tells us to drop the xfails and the doc note."""
    for case, (_, _, expected, limitation) in enumerate(REGRESSION):
        if limitation:
            assert verdicts[case].correct is not expected


def test_gold_that_cannot_be_parsed_is_reported() -> None:
    unparseable, empty, missing = get_grader("math-verify").grade(
        [(r"\boxed{5}", r"\text{}"), (r"\boxed{5}", "$ $"), (r"\boxed{5}", None)]
    )
    assert unparseable.correct is False and unparseable.error == "gold answer not parseable by math-verify"
    assert empty.correct is False and empty.error == "empty gold answer"
    assert missing.correct is False and missing.error == "no gold answer"
