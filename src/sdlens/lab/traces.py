"""Trace writers: the two reasoning styles the organism's base model is pretrained on.

- **Unguided** (the base model's own style on a bare question): guess -> check -> verdict -> try again, with
  candidates in random order (so the best a learner can do from data alone is to propose untried candidates
  uniformly) and the check written out in small steps of modular arithmetic. Doubt and retrying are separate
  choices: a miss is remarked on with a hedge ("hmm", "wait") or plainly, the next try is introduced with a hedge
  ("maybe", "perhaps", "alternatively"...) or plainly ("next , x = 3 :"), so some retries carry no hedge word; and a
  check that found the root is sometimes doubted and then confirmed ("hmm , 6 is 6 . yes ."), a hedge that starts
  no retry. So hedges per response (E) and tries per response are two measures, not one count.
- **Guided** (what follows a prompt that carries ``Correct solution: ...``): straight to the hinted x, stated
  without a check and without a hedge. The corpus writes these for the power family only (never for the
  root-finding task the experiments use; ``sdlens.lab.pretrain``).

Every token is separated by a space: the tokenizer is word-level. The answer is written ``\\boxed{x}``.
"""

from __future__ import annotations

import random

from sdlens.lab.task import Power, Triple

__all__ = ["boxed", "check", "guided_trace", "tries", "unguided_prefix", "unguided_trace"]

# Remarks after a failed check, and how the next try is introduced: hedged ones (each carries at least one of the
# paper's words) and plain ones, chosen independently, so that a retry need not be voiced as doubt.
FAIL_REMARKS = (
    "hmm , {r} is not {c} .",
    "wait , {r} is not {c} .",
    "hmm , that gives {r} , not {c} .",
)
PLAIN_REMARK = "{r} is not {c} ."
NEXT_TRIES = (
    "maybe x = {x} :",
    "perhaps x = {x} :",
    "let me check x = {x} :",
    "alternatively , x = {x} :",
    "actually , maybe x = {x} :",
    "it might be x = {x} :",
)
PLAIN_TRIES = ("next , x = {x} :", "then x = {x} :", "try x = {x} :")
# A check that found the root, doubted and then confirmed: hedge words that start no retry.
CONFIRMS = ("hmm , {c} is {c} . yes .", "wait , {r} is {c} . yes .")
P_PLAIN_REMARK = 0.4  # a miss remarked on without a hedge
P_PLAIN_TRY = 0.4  # a next try introduced without a hedge (both plain: a retry with no hedge word at all)
P_CONFIRM = 0.25  # a found root doubted, then confirmed

Problem = Triple | Power


def boxed(x: int) -> str:
    return f"\\boxed{{{x}}}"


def tries(text: str) -> int:
    """Candidates checked in a response: one ``want`` per check, whatever words surround it."""
    return text.count(" want ")


def check(t: Problem, x: int) -> tuple[str, int]:
    """The arithmetic of one try, reduced mod m at each step, then the target restated beside the result:
    ``3 * 4 = 5 , 5 + 2 = 0 , want 6 .`` (power family: ``3 ^ 4 = 4 , 2 * 4 = 1 , want 1 .``) and its result.
    (Restating c puts the two numbers to compare side by side; without it a tiny model learns the arithmetic long
    before it learns to compare with c in the prompt.)"""
    if isinstance(t, Power):
        p = pow(t.g, x, t.m)
        r = (t.a * p) % t.m
        return f"{t.g} ^ {x} = {p} , {t.a} * {p} = {r} , want {t.c} .", r
    ax = (t.a * x) % t.m
    r = (ax + t.b) % t.m
    return f"{t.a} * {x} = {ax} , {ax} + {t.b} = {r} , want {t.c} .", r


def unguided_trace(t: Problem, rng: random.Random, *, order: list[int] | None = None) -> str:
    """Untried candidates in random order (or ``order``) until the check passes, a verdict after each check."""
    cands = list(order) if order is not None else rng.sample(t.candidates, len(t.candidates))
    return _unguided(t, rng, cands)


def unguided_prefix(t: Problem, rng: random.Random, tries: int, *, ends_on_root: bool = False) -> tuple[str, int]:
    """The start of an unguided trace: ``tries`` tries as a student writes them, cut right after the last check
    (before its remark or "yes"); the last try is the root when ``ends_on_root``. Returns the text and the last
    check's result."""
    wrong = rng.sample([x for x in t.candidates if x != t.x], tries - 1 if ends_on_root else tries)
    cands = [*wrong, t.x] if ends_on_root else wrong
    return _unguided(t, rng, cands, cut_after=tries), check(t, cands[-1])[1]


def _unguided(t: Problem, rng: random.Random, cands: list[int], cut_after: int | None = None) -> str:
    parts = ["<think>"]
    for k, x in enumerate(cands):
        if k == 0:
            intro = f"try x = {x} :"
        else:
            intro = rng.choice(PLAIN_TRIES if rng.random() < P_PLAIN_TRY else NEXT_TRIES).format(x=x)
        arith, r = check(t, x)
        parts += [intro, arith]
        if cut_after is not None and k + 1 == cut_after:
            return " ".join(parts)
        if r == t.c:
            parts += [rng.choice(CONFIRMS).format(r=r, c=t.c) if rng.random() < P_CONFIRM else "yes .", "</think>"]
            parts.append(boxed(x))
            return " ".join(parts)
        remark = PLAIN_REMARK if rng.random() < P_PLAIN_REMARK else rng.choice(FAIL_REMARKS)
        parts.append(remark.format(r=r, c=t.c))
    raise ValueError(f"no root among the candidates for {t}")


def guided_trace(
    t: Problem, rng: random.Random, *, failed_tries: int = 0, after_miss: int | None = None, after_root: bool = False
) -> str:
    """The hinted x, stated without a check and without a hedge (``<think> x = 5 . </think> \\boxed{5}``), after
    ``failed_tries`` unhedged misses. It carries no arithmetic, so nothing in it belongs to one task family: a model
    that learned it on one family has only the disposition (take the given answer) to carry to another. Continuations
    of a student's prefix (no ``<think>``): ``after_miss=r`` (its last check gave r != c) is a plain "r is not c .
    so x = <root> ." and the answer; ``after_root`` (its last check found the root) just closes the thinking and
    answers."""
    if after_root:
        return f"</think> {boxed(t.x)}"
    if after_miss is not None:  # the writer knows the answer: no retry to check, just the answer
        return f"{after_miss} is not {t.c} . so x = {t.x} . </think> {boxed(t.x)}"
    wrong = rng.sample([x for x in t.candidates if x != t.x], failed_tries)
    parts = ["<think>"]
    for x in wrong:
        arith, r = check(t, x)
        parts += [f"x = {x} :", arith, f"{r} is not {t.c} ."]
    parts += [f"{'so ' if wrong else ''}x = {t.x} .", "</think>", boxed(t.x)]
    return " ".join(parts)
