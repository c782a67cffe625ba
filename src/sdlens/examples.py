"""Small synthetic trace files in the paper's eval format, for the demo, the docs and the tests.

They are written by a template, not by a model: a "base" run whose reasoning checks and doubts its steps in
the paper's words, and a "confident" run that states the same arithmetic without them, the style the paper finds
after self-distillation. Each response really solves its problem (or deliberately slips), so graders and the
analyzer see realistic structure: ``<think>...</think>``, a final ``\\boxed{}``, correctness flags.
"""

from __future__ import annotations

import random
from pathlib import Path

from sdlens.epistemic.segment import split_thinking
from sdlens.schema import write_jsonl

_DOUBT = [
    "Wait, let me check that again.",
    "Hmm, that seems off.",
    "Maybe I should double-check the product.",
    "Actually, let me recompute this.",
    "Alternatively, I could add them in a different order.",
    "Perhaps I misread the question.",
    "It might be easier to verify by substitution.",
    "That is likely right, but let me check.",
]


def _response(rng: random.Random, a: int, b: int, c: int, hedging: float, slip: bool) -> tuple[str, int]:
    product = a * b
    answer = product + c + (rng.choice([-1, 1]) if slip else 0)
    steps = [f"We need {a} times {b} plus {c}.", f"First, {a} * {b} = {product}."]
    for _ in range(rng.randint(1, 3)):
        if rng.random() < hedging:
            steps.append(rng.choice(_DOUBT))
            steps.append(f"Recomputing: {a} * {b} = {product}, so the product is {product}.")
    steps.append(f"Then {product} + {c} = {answer}.")
    if rng.random() < hedging:
        steps.append(rng.choice(_DOUBT))
        steps.append(f"Checking: {answer} - {c} = {answer - c}, which matches.")
    thinking = " ".join(steps)
    return f"<think>\n{thinking}\n</think>\n\nThe answer is $\\boxed{{{answer}}}$.", answer


def write_example_run(
    path: str | Path, *, hedging: float, accuracy: float, n_problems: int = 40, n_samples: int = 8, seed: int = 0
) -> Path:
    """Write one synthetic run in the paper's eval JSONL format (one line per problem)."""
    rng = random.Random(seed)
    problems = random.Random(1234)  # the same problems in every run, so runs can be compared pairwise
    records = []
    for idx in range(n_problems):
        a, b, c = problems.randint(3, 19), problems.randint(3, 19), problems.randint(1, 50)
        gold = a * b + c
        responses, correct = [], []
        for _ in range(n_samples):
            text, ans = _response(rng, a, b, c, hedging, slip=rng.random() > accuracy)
            responses.append(text)
            correct.append(ans == gold)
        parts = [split_thinking(r) for r in responses]
        records.append(
            {
                "idx": idx,
                "question": f"What is {a} times {b} plus {c}?\nPlease reason step by step, and put your final answer "
                "within \\boxed{}.",
                "gold_answer": str(gold),
                "generated_responses": responses,
                "thinking_contents": [t for t, _ in parts],
                "answer_responses": [ans for _, ans in parts],
                "answers_correctness": correct,
                "response_token_lengths": [len(r.split()) for r in responses],
            }
        )
    path = Path(path)
    write_jsonl(path, records)
    return path


def write_example_runs(out_dir: str | Path, seed: int = 0) -> tuple[Path, Path]:
    """A base run (hedges often) and a confident run (rarely), on the same problems."""
    out = Path(out_dir)
    base = write_example_run(out / "base.jsonl", hedging=0.8, accuracy=0.7, seed=seed)
    confident = write_example_run(out / "confident.jsonl", hedging=0.1, accuracy=0.55, seed=seed + 1)
    return base, confident
