"""The exact shortcut of the math-verify grader (``sdlens.grading.exact``) against real math-verify."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from sdlens.grading._worker import grade_mv
from sdlens.grading.exact import exact_value, same_value


def test_values_and_grammar() -> None:
    assert exact_value("42") == (Fraction(42), 1)
    assert exact_value("-\\frac{6}{8}") == (Fraction(-3, 4), 1)
    assert exact_value("\\dfrac{4}{2}") == (Fraction(2), 1)
    assert exact_value("\\sqrt{18}") == (Fraction(3), 2)
    assert exact_value("5\\sqrt{175}") == (Fraction(25), 7)
    assert exact_value("\\sqrt{16}") == (Fraction(4), 1)
    assert exact_value("0\\sqrt{5}") == exact_value("-0") == exact_value("\\sqrt{0}") == (Fraction(0), 1)
    # outside the grammar: left to math-verify
    for text in ["0.75", "007", "1,000", "50\\%", "\\frac{1}{0}", "\\frac34", "x=3", "3 \\sqrt{2}", "", "1" * 16]:
        assert exact_value(text) is None, text
    assert same_value("3\\sqrt{2}", "\\sqrt{18}") is True
    assert same_value("17", "18") is False
    assert same_value("17", "17.0") is None


# answers of the grammar, written so that equal values in different forms are common
digits = st.integers(0, 60)
big = st.integers(0, 10**15 - 1)
small = st.integers(0, 999_999)


@st.composite
def answer(draw) -> str:
    sign = draw(st.sampled_from(["", "", "-"]))
    kind = draw(st.sampled_from(["int", "frac", "sqrt", "csqrt", "bigint", "bigfrac", "bigsqrt"]))
    if kind == "int":
        return f"{sign}{draw(digits)}"
    if kind == "bigint":
        return f"{sign}{draw(big)}"
    frac = draw(st.sampled_from(["\\frac", "\\dfrac", "\\tfrac"]))
    if kind == "frac":
        return f"{sign}{frac}{{{draw(digits)}}}{{{draw(st.integers(1, 12))}}}"
    if kind == "bigfrac":
        return f"{sign}{frac}{{{draw(big)}}}{{{draw(st.integers(1, 10**15 - 1))}}}"
    if kind == "sqrt":
        return f"{sign}\\sqrt{{{draw(st.sampled_from([0, 1, 2, 3, 4, 8, 9, 12, 16, 18, 27, 32, 50, 72, 75]))}}}"
    if kind == "csqrt":
        return f"{sign}{draw(st.integers(0, 9))}\\sqrt{{{draw(st.sampled_from([2, 3, 4, 5, 8, 12, 18, 20]))}}}"
    return f"{sign}{draw(small)}\\sqrt{{{draw(small)}}}"


@settings(max_examples=400, deadline=None)
@given(gold=answer(), pred=answer())
def test_same_verdict_as_math_verify(gold: str, pred: str) -> None:
    decided = same_value(gold, pred)
    assert decided is not None
    assert (decided, None) == grade_mv(gold, pred, 5)


def test_same_verdict_as_math_verify_on_close_calls() -> None:
    cases = [
        ("665857", "470832\\sqrt{2}"),  # a Pell pair: 665857^2 - 2 * 470832^2 = 1
        ("\\frac{665857}{470832}", "\\sqrt{2}"),
        ("999999\\sqrt{999998}", "999998\\sqrt{999999}"),
        ("\\frac{999999999999999}{999999999999998}", "\\frac{999999999999998}{999999999999997}"),
        ("100000000000001", "100000000000000"),
        ("2", "\\sqrt{4}"),
        ("-7\\sqrt{5}", "-\\sqrt{245}"),
        ("\\dfrac{1}{2}", "\\tfrac{2}{4}"),
        ("0", "-0"),
        ("6\\sqrt{2}", "2\\sqrt{18}"),
        ("3\\sqrt{12}", "6\\sqrt{3}"),
    ]
    for gold, pred in cases:
        assert (same_value(gold, pred), None) == grade_mv(gold, pred, 5), (gold, pred)
