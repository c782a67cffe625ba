"""The pretraining gate: did the base model learn to *check* its guesses, or to recall pool roots?

Both fit the pretraining corpus: after a check (``3 * 6 = 4 , 4 + 5 = 2 , want 6 .``) the trace says ``yes`` exactly
when the result equals c, and also exactly when x is the problem's root, which a model can memorise for the pool's
problems (each is seen some twenty times). Only the comparison carries over to unseen problems. Which one a run
learns depends on its seed: with the same recipe, some seeds compared flawlessly and others accepted wrong candidates
and doubted right ones on unseen problems (docs/organism.md, design notes).

So a few pool problems (``gate_problems``) are kept out of the pretraining corpus (they stay in the pool for every
later stage), the model samples unguided answers to them, and every check it writes is scored: was the arithmetic
right, and did the verdict (``yes``, possibly after a doubt, or a remark that the result is not c) follow from
comparing the written result with c? A model
that fails is pretrained again from another initialisation (``max_attempts``). Nothing here looks at the OOD
problems or at any experiment's outcome.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from sdlens.lab.task import Triple, to_problem

__all__ = ["GATE_VERDICT_ACC", "gate_report", "score_checks", "split_gate"]

GATE_VERDICT_ACC = 0.95  # share of checks whose verdict follows from the comparison (flawless seeds: > 0.99)

# one try as the traces write it: "x = 6 : 3 * 6 = 4 , 4 + 5 = 2 , want 6 ." and what follows up to the next try,
# the end of the thinking or the end of the text: the verdict ("yes ." or "hmm , 6 is 6 . yes ." accepts; "2 is not
# 6 ." or "that gives 2 , not 6 ." rejects; nothing of either, as in a response cut off there, is no verdict)
_CHECK = re.compile(
    r"x = (\d+) : (\d+) \* (\d+) = (\d+) , (\d+) \+ (\d+) = (\d+) , want (\d+) \.((?:(?!x = |</think>).)*)"
)


def split_gate(pool: list[Triple] | tuple[Triple, ...], k: int, seed: int) -> tuple[list[Triple], list[Triple]]:
    """``(gate, rest)``: the ``k`` pool problems ranked first by ``blake2b(seed, id)``, and the others in order."""
    ranked = sorted(pool, key=lambda t: hashlib.blake2b(f"gate-{seed}\x00{t.id}".encode()).digest())
    gate = {t.id for t in ranked[:k]}
    return [t for t in pool if t.id in gate], [t for t in pool if t.id not in gate]


def score_checks(responses: list[str], triples: list[Triple]) -> dict[str, Any]:
    """Every check with a verdict in the responses (``responses[i]`` answers ``triples[i]``): arithmetic right, and
    the verdict right (accepted iff the written result equals c)."""
    checks = arith_ok = verdict_ok = 0
    for text, t in zip(responses, triples, strict=True):
        for m in _CHECK.finditer(text):
            x, a, _x2, ax, _ax2, b, r, c = (int(g) for g in m.groups()[:8])
            after = f" {m.group(9)} "
            accepted, rejected = " yes " in after, " not " in after
            if accepted == rejected:  # no verdict (cut off), or both: not a verdict this score can read
                continue
            checks += 1
            arith_ok += ax == (t.a * x) % t.m and r == (ax + t.b) % t.m and a == t.a and b == t.b and c == t.c
            verdict_ok += accepted == (r == c)
    return {
        "checks": checks,
        "arithmetic_acc": arith_ok / checks if checks else 0.0,
        "verdict_acc": verdict_ok / checks if checks else 0.0,
    }


def gate_report(model: Any, tok: Any, gate: list[Triple], *, n: int, max_new_tokens: int, seed: int) -> dict[str, Any]:
    """Sample ``n`` unguided answers per gate problem (temperature 1, as every stage samples) and score their checks;
    ``passed`` when the verdicts follow the comparison (``GATE_VERDICT_ACC``)."""
    import torch

    prompts = [
        tok.apply_chat_template(to_problem(t, "pool").messages, add_generation_prompt=True, tokenize=False)
        for t in gate
    ]
    tok.padding_side = "left"
    batch = tok([p for p in prompts for _ in range(n)], return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(seed)
        out = model.generate(
            **batch, do_sample=True, temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=max_new_tokens
        )
    texts = tok.batch_decode(out[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
    report = score_checks(texts, [t for t in gate for _ in range(n)])
    report["passed"] = report["checks"] > 0 and report["verdict_acc"] >= GATE_VERDICT_ACC
    return report
