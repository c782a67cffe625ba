r"""Exact values of the simplest answers, so that the math-verify grader can decide them without a worker.

The grammar (after :func:`sdlens.grading.extract.normalize_answer_text`): an optional ``-`` and then one of an
integer (``0`` or no leading zero, at most 15 digits), ``\frac{a}{b}`` / ``\dfrac`` / ``\tfrac`` with integers
``a`` and ``b > 0``, or ``c\sqrt{r}`` / ``\sqrt{r}`` with integers ``c`` and ``r`` of at most 6 digits. No
spaces, decimals, percent signs, units or anything else: those go to math-verify.

Why this agrees with math-verify (``verify(parse(\boxed{gold}), parse(\boxed{answer}))``): it parses each of
these to an exact sympy value (an Integer, a Rational, or a square root, possibly unevaluated, times an integer)
plus the string itself, and compares every pair. The string pair matches only identical strings, which have equal
values. For the sympy pair, with no Float and no percentage involved: ``a == b`` and the numeric check are exact
equality when either side is a sympy Number; between two roots the numeric check is ``(a - b).evalf(n=15,
chop=True) == 0``, and two different values ``c1 sqrt(r1) != c2 sqrt(r2)`` with parts of at most 6 digits differ by
``|c1^2 r1 - c2^2 r2| / (|c1| sqrt(r1) + |c2| sqrt(r2)) >= 5e-10``, far above what 15 digits chop (hence the
6-digit limit on roots); the symbolic check ``simplify(a - b).is_zero`` holds exactly for equal values. So the
verdict is "the two values are equal", which :func:`same_value` computes with fractions: ``q1 sqrt(r1) ==
q2 sqrt(r2)`` for square-free ``r`` exactly when ``q1 == q2`` and ``r1 == r2`` (both forms of zero are
``(0, 1)``). ``tests/test_grading_exact.py`` holds this equal to math-verify on random answers of the grammar and
on close calls.
"""

from __future__ import annotations

import re
from fractions import Fraction

__all__ = ["exact_value", "same_value"]

_INT = r"(?:0|[1-9][0-9]{0,14})"
_SMALL = r"(?:0|[1-9][0-9]{0,5})"
_ANSWER = re.compile(
    rf"(-?)(?:({_INT})|\\[dt]?frac\{{({_INT})\}}\{{({_INT})\}}|({_SMALL})?\\sqrt\{{({_SMALL})\}})", re.ASCII
)


def _square_free(r: int) -> tuple[int, int]:
    """``(s, f)`` with ``r == s * s * f`` and ``f`` square-free (``r`` >= 1, at most 6 digits)."""
    s, d = 1, 2
    while d * d <= r:
        while r % (d * d) == 0:
            r //= d * d
            s *= d
        d += 1
    return s, r


def exact_value(text: str) -> tuple[Fraction, int] | None:
    """``(q, r)``: the value ``q * sqrt(r)`` with ``r`` square-free (``r == 1`` for a rational; zero is
    ``(0, 1)``), or ``None`` when ``text`` is outside the grammar."""
    m = _ANSWER.fullmatch(text)
    if m is None:
        return None
    sign, integer, num, den, coef, radicand = m.groups()
    if integer is not None:
        q, r = Fraction(int(integer)), 1
    elif num is not None:
        if int(den) == 0:
            return None
        q, r = Fraction(int(num), int(den)), 1
    else:
        s, r = _square_free(int(radicand)) if int(radicand) else (0, 1)
        q = Fraction(int(coef) if coef is not None else 1) * s
    if sign:
        q = -q
    return (q, 1) if q == 0 else (q, r)


def same_value(gold: str, answer: str) -> bool | None:
    """Whether the two answers have the same value, or ``None`` when either is outside the grammar."""
    a, b = exact_value(gold), exact_value(answer)
    if a is None or b is None:
        return None
    return a == b
