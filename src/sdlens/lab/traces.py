"""Trace writers: the two reasoning styles the organism's base model is pretrained on.

- **Unguided** (the base model's own style on a bare question): guess -> check -> doubt -> try again, with candidates
  in random order (so the best a learner can do from data alone is to propose untried candidates uniformly), the
  check written out in two steps of modular arithmetic, and every failed check followed by the paper's epistemic
  words ("hmm", "wait", "maybe", "perhaps", "seems", "actually", "alternatively", "check").
- **Guided** (what follows a prompt that carries ``Correct solution: ...``): straight to the hinted x, checked once,
  no hedges. Some guided traces first make one or two failed tries, also written without hedges, so that a
  hint-conditioned teacher that reads a student's exploring prefix predicts a confident jump to the answer, as a
  real solution-conditioned teacher does.

Every token is separated by a space: the tokenizer is word-level. The answer is written ``\\boxed{x}``.
"""

from __future__ import annotations

import random

from sdlens.lab.task import Triple

__all__ = ["boxed", "check", "guided_trace", "unguided_prefix", "unguided_trace"]

# Remarks after a failed check, and how the next try is introduced; each carries at least one hedge word.
FAIL_REMARKS = (
    "hmm , {r} is not {c} .",
    "wait , {r} is not {c} .",
    "hmm , that gives {r} , not {c} .",
)
NEXT_TRIES = (
    "maybe x = {x} :",
    "perhaps x = {x} :",
    "let me check x = {x} :",
    "alternatively , x = {x} :",
    "actually , maybe x = {x} :",
    "it might be x = {x} :",
)


def boxed(x: int) -> str:
    return f"\\boxed{{{x}}}"


def check(t: Triple, x: int) -> tuple[str, int]:
    """The arithmetic of one try, reduced mod m at each step, then the target restated beside the result:
    ``3 * 4 = 5 , 5 + 2 = 0 , want 6 .`` and its result. (Restating c puts the two numbers to compare side by side;
    without it a tiny model learns the arithmetic long before it learns to compare with c in the prompt.)"""
    ax = (t.a * x) % t.m
    r = (ax + t.b) % t.m
    return f"{t.a} * {x} = {ax} , {ax} + {t.b} = {r} , want {t.c} .", r


def unguided_trace(t: Triple, rng: random.Random, *, order: list[int] | None = None) -> str:
    """Untried candidates in random order (or ``order``) until the check passes, doubting aloud after each miss."""
    cands = list(order) if order is not None else rng.sample(range(t.m), t.m)
    return _unguided(t, rng, cands)


def unguided_prefix(t: Triple, rng: random.Random, tries: int, *, ends_on_root: bool = False) -> tuple[str, int]:
    """The start of an unguided trace: ``tries`` tries as a student writes them, cut right after the last check
    (before its remark or "yes"); the last try is the root when ``ends_on_root``. Returns the text and the last
    check's result."""
    wrong = rng.sample([x for x in range(t.m) if x != t.x], tries - 1 if ends_on_root else tries)
    cands = [*wrong, t.x] if ends_on_root else wrong
    return _unguided(t, rng, cands, cut_after=tries), check(t, cands[-1])[1]


def _unguided(t: Triple, rng: random.Random, cands: list[int], cut_after: int | None = None) -> str:
    parts = ["<think>"]
    for k, x in enumerate(cands):
        intro = f"try x = {x} :" if k == 0 else rng.choice(NEXT_TRIES).format(x=x)
        arith, r = check(t, x)
        parts += [intro, arith]
        if cut_after is not None and k + 1 == cut_after:
            return " ".join(parts)
        if r == t.c:
            parts += ["yes .", "</think>", boxed(x)]
            return " ".join(parts)
        parts.append(rng.choice(FAIL_REMARKS).format(r=r, c=t.c))
    raise ValueError(f"no root among the candidates for {t}")


def guided_trace(
    t: Triple, rng: random.Random, *, failed_tries: int = 0, after_miss: int | None = None, after_root: bool = False
) -> str:
    """The hinted x, checked once, no hedges; first ``failed_tries`` unhedged misses. Continuations of a student's
    prefix (no ``<think>``): ``after_miss=r`` (its last check gave r != c) is a plain "r is not c . so x = <root> ."
    and the answer, unchecked; ``after_root`` (its last check found the root) just closes the thinking and answers."""
    if after_root:
        return f"</think> {boxed(t.x)}"
    if after_miss is not None:  # the writer knows the answer: no retry to check, just the answer
        return f"{after_miss} is not {t.c} . so x = {t.x} . </think> {boxed(t.x)}"
    wrong = rng.sample([x for x in range(t.m) if x != t.x], failed_tries)
    parts = ["<think>"]
    for x in wrong:
        arith, r = check(t, x)
        parts += [f"x = {x} :", arith, f"{r} is not {t.c} ."]
    arith, r = check(t, t.x)
    parts += [f"x = {t.x} :", arith, "</think>", boxed(t.x)]
    return " ".join(parts)
