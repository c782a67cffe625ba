"""The organism's task, "find the hidden root": find x in 0..m-1 with (a * x + b) mod m = c, m prime.

With ``a != 0`` every (a, b, c) has exactly one root, and every (a, x, b) gives one problem, so a problem is named by
its (a, b, c) and its answer is x. The problems are split once, deterministically from a seed, into an in-domain pool
(everything any training stage may see: pretraining, SFT, RL coverage sets, in-domain evals) and a held-out OOD set
that no training stage ever reads. The split is by (a, b, c) triple, so an OOD problem differs from every pool
problem; the arithmetic facts a check uses (a * x mod m, y + b mod m) all occur in pool problems, which is what makes
guess -> check -> try again work on unseen problems.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from sdlens.prompts import PAPER_SUFFIX
from sdlens.schema import Problem, write_jsonl

__all__ = [
    "Power",
    "Splits",
    "TaskConfig",
    "Triple",
    "make_splits",
    "power_problems",
    "problem_text",
    "question",
    "to_problem",
    "write_problems",
]

SOURCE = "organism-root"


@dataclass(frozen=True, order=True)
class Triple:
    """One problem: (a * x + b) mod m = c; ``x`` is the answer."""

    m: int
    a: int
    b: int
    c: int
    x: int

    @property
    def id(self) -> str:
        return f"m{self.m}-a{self.a}-b{self.b}-c{self.c}"

    @property
    def candidates(self) -> range:
        return range(self.m)


@dataclass(frozen=True, order=True)
class Power:
    """A problem of the pretraining corpus's second family (never an experiment's): find x in 0..m-2 with
    (a * g ^ x) mod m = c, g a primitive root of m (so x is unique). The same guess -> check -> retry search over
    other arithmetic; it is the only family the corpus ever shows under a hint (docs/organism.md)."""

    m: int
    g: int
    a: int
    c: int
    x: int

    @property
    def id(self) -> str:
        return f"pow-m{self.m}-g{self.g}-a{self.a}-c{self.c}"

    @property
    def candidates(self) -> range:
        return range(self.m - 1)


@dataclass(frozen=True)
class TaskConfig:
    """The task and its split."""

    modulus: int = 7  # prime, so every a != 0 has an inverse and each problem one root
    ood_fraction: float = 0.25  # share of all (a, b, c) triples held out from every training stage
    seed: int = 0  # the split (and nothing else) depends on it

    def __post_init__(self) -> None:
        m = self.modulus
        if m < 3 or any(m % d == 0 for d in range(2, int(m**0.5) + 1)):
            raise ValueError(f"modulus must be a prime >= 3, got {m}")
        if not 0.0 < self.ood_fraction < 1.0:
            raise ValueError(f"ood_fraction must be in (0, 1), got {self.ood_fraction}")


@dataclass(frozen=True)
class Splits:
    pool: tuple[Triple, ...]  # in-domain: every training stage draws from here only
    ood: tuple[Triple, ...]  # held out from every training stage


def all_triples(m: int) -> list[Triple]:
    return [Triple(m, a, b, (a * x + b) % m, x) for a in range(1, m) for b in range(m) for x in range(m)]


def make_splits(cfg: TaskConfig) -> Splits:
    """Deterministic in ``cfg``: shuffle every triple with the seed and hold out the first ``ood_fraction``."""
    triples = all_triples(cfg.modulus)
    rng = random.Random(f"organism-split-{cfg.seed}-{cfg.modulus}")
    rng.shuffle(triples)
    k = round(len(triples) * cfg.ood_fraction)
    return Splits(pool=tuple(sorted(triples[k:])), ood=tuple(sorted(triples[:k])))


def power_problems(m: int) -> list[Power]:
    """Every power-family problem of modulus ``m``: each primitive root g, each a != 0 and each x in 0..m-2."""
    roots = [g for g in range(2, m) if len({pow(g, k, m) for k in range(m - 1)}) == m - 1]
    return [Power(m, g, a, (a * pow(g, x, m)) % m, x) for g in roots for a in range(1, m) for x in range(m - 1)]


def problem_text(t: Triple) -> str:
    """The question, words and numbers separated by spaces (the organism's tokenizer is word-level)."""
    return f"find x in 0 to {t.m - 1} with ( {t.a} * x + {t.b} ) mod {t.m} = {t.c} ."


def question(t: Triple | Power) -> str:
    """Either family's question as a user message's content, with the paper's instruction."""
    if isinstance(t, Power):
        return f"find x in 0 to {t.m - 2} with ( {t.a} * {t.g} ^ x ) mod {t.m} = {t.c} ." + PAPER_SUFFIX
    return problem_text(t) + PAPER_SUFFIX


def to_problem(t: Triple, split: str) -> Problem:
    """A :class:`Problem` in the form real models get: one user message ending with the paper's instruction."""
    return Problem(
        id=t.id,
        messages=[{"role": "user", "content": question(t)}],
        answer=str(t.x),
        source=SOURCE,
        split=split,
        meta={"m": t.m, "a": t.a, "b": t.b, "c": t.c},
    )


def write_problems(path: str | Path, triples: list[Triple] | tuple[Triple, ...], split: str) -> Path:
    """Problem JSONL (atomic), readable by ``sdlens eval --benchmark PATH`` and the trainers."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(path, [to_problem(t, split) for t in triples])
    return path
