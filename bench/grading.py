"""Grading throughput, end to end through the CLI (`sdlens grade`), against the plain sequential math-verify loop.

Ordinary answers: integers, fractions and radicals; a third written exactly like the gold answer, a third an
equivalent form (0.75 for \\frac{3}{4}, \\sqrt{18} for 3\\sqrt{2}), a third wrong. Responses carry a thinking
part and ~1 KB of text. The CLI time includes process start-up, worker start-up, reading and writing.

The reference is what a user would write without sdlens: for each answer, in this (main) thread,
``verify(parse(gold), parse(answer))`` with the same boxed wrapping. It is timed on a subset.

    .venv/bin/python bench/grading.py [--n 6000] [--workers 2] [--reference 600] [--no-exact]
    .venv/bin/python bench/grading.py --mix exact-wrong --n 3000

``--mix exact-wrong``: half the answers written exactly like the gold answer, half distinct wrong integers,
fractions and radicals (every wrong answer different, so each one is a math-verify call). The reference is then
timed on a subset with the same half-and-half share.

The last line printed is one JSON object with ``answers_per_s``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FILLER = "Let me think about this step by step. We consider the cases and check each one carefully. " * 6


def make_answers(n: int, seed: int = 0, exact: bool = True) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    per_problem = 8
    for p in range(n // per_problem + 1):
        kind = p % 3
        if kind == 0:  # integer
            v = rng.randint(1, 999)
            gold, equiv, wrong = str(v), f"{v}.0", lambda v=v: str(v + rng.randint(1, 50))
        elif kind == 1:  # fraction
            a, b = rng.randint(1, 40), rng.choice([2, 4, 5, 8])
            gold = rf"\frac{{{a}}}{{{b}}}"
            equiv = str(a / b)
            wrong = lambda a=a, b=b: rf"\frac{{{a + rng.randint(1, 9)}}}{{{b}}}"  # noqa: E731
        else:  # radical
            a, r = rng.randint(2, 9), rng.choice([2, 3, 5, 6, 7])
            gold = rf"{a}\sqrt{{{r}}}"
            equiv = rf"\sqrt{{{a * a * r}}}"
            wrong = lambda a=a, r=r: rf"{a + rng.randint(1, 5)}\sqrt{{{r}}}"  # noqa: E731
        for i in range(per_problem):
            if len(rows) >= n:
                return rows
            which = (p + i) % 3
            ans = (gold if exact else equiv) if which == 0 else equiv if which == 1 else wrong()
            response = f"<think>\n{FILLER}\n</think>\n\n{FILLER[:300]}So the answer is $\\boxed{{{ans}}}$."
            rows.append({"problem_id": f"p{p}", "index": i, "response": response, "answer": gold})
    return rows


def make_exact_wrong(n: int, seed: int = 0) -> list[dict]:
    """Half exact (written like the gold answer), half distinct wrong answers, alternating; 8 per problem."""
    rng = random.Random(seed)
    rows: list[dict] = []
    seen: set[str] = set()
    p = 0
    while len(rows) < n:
        kind = p % 3
        if kind == 0:
            gold = str(rng.randint(1, 999))
        elif kind == 1:
            gold = rf"\frac{{{rng.randint(1, 40)}}}{{{rng.choice([3, 7, 9, 11])}}}"
        else:
            gold = rf"{rng.randint(2, 9)}\sqrt{{{rng.choice([2, 3, 5, 6, 7])}}}"
        for i in range(8):
            if len(rows) >= n:
                break
            if i % 2 == 0:
                ans = gold
            else:
                while True:  # a wrong answer never used before, of the same kind
                    if kind == 0:
                        ans = str(rng.randint(1000, 10**7))
                    elif kind == 1:
                        ans = rf"\frac{{{rng.randint(41, 10**5)}}}{{{rng.choice([3, 7, 9, 11, 13])}}}"
                    else:
                        ans = rf"{rng.randint(10, 10**5)}\sqrt{{{rng.choice([2, 3, 5, 6, 7])}}}"
                    if ans not in seen:
                        seen.add(ans)
                        break
            response = f"<think>\n{FILLER}\n</think>\n\n{FILLER[:300]}So the answer is $\\boxed{{{ans}}}$."
            rows.append({"problem_id": f"p{p}", "index": i, "response": response, "answer": gold})
        p += 1
    return rows


def reference(rows: list[dict]) -> tuple[float, list[bool]]:
    from math_verify import parse, verify

    from sdlens.grading.extract import extract_answer

    t0 = time.perf_counter()
    out = []
    for r in rows:
        pred = extract_answer(r["response"])
        g = parse("\\boxed{" + r["answer"] + "}")
        p = parse("\\boxed{" + pred + "}")
        out.append(bool(verify(g, p)))
    return time.perf_counter() - t0, out


def decided_in_parent(rows: list[dict]) -> int:
    """Answers the math-verify grader decides without a worker (written like the gold, or plain numbers)."""
    from sdlens.grading.exact import same_value
    from sdlens.grading.extract import extract_answer, gold_answer_text, normalize_answer_text

    n = 0
    for r in rows:
        g, p = gold_answer_text(r["answer"]), normalize_answer_text(extract_answer(r["response"]) or "")
        n += p == g or same_value(g, p) is not None
    return n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=6000)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--reference", type=int, default=600, help="answers timed with the sequential reference")
    ap.add_argument(
        "--no-exact", action="store_true", help="no answer written exactly like its gold (all go to math-verify)"
    )
    ap.add_argument("--mix", choices=["thirds", "exact-wrong"], default="thirds", help="answer mix (see above)")
    args = ap.parse_args()
    rows = make_exact_wrong(args.n) if args.mix == "exact-wrong" else make_answers(args.n, exact=not args.no_exact)
    sdlens = Path(sys.executable).with_name("sdlens")
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "answers.jsonl", Path(tmp) / "graded.jsonl"
        src.write_text("".join(json.dumps(r) + "\n" for r in rows))
        cmd = [str(sdlens), "grade", str(src), "-o", str(out), "--json"]
        if args.workers:
            cmd += ["--workers", str(args.workers)]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "COLUMNS": "120"})
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            sys.exit(f"sdlens grade failed: {proc.stderr}")
        summary = json.loads(proc.stdout)
        graded = [json.loads(line) for line in out.read_text().splitlines()]
    sub = rows[: args.reference]
    ref_s, ref_verdicts = reference(sub)
    agree = sum(g["correct"] == v for g, v in zip(graded, ref_verdicts, strict=False))
    result = {
        "bench": "grading",
        "n": len(rows),
        "mix": args.mix,
        "exact_matches": not args.no_exact,
        "cli_wall_s": round(wall, 3),
        "answers_per_s": round(len(rows) / wall, 1),
        "grading_answers_per_s": summary["answers_per_s"],
        "accuracy": round(summary["accuracy"], 4),
        "decided_without_math_verify": decided_in_parent(rows),
        "reference_answers_per_s": round(len(sub) / ref_s, 1),
        "speedup_vs_reference": round((len(rows) / wall) / (len(sub) / ref_s), 2),
        "agreement_with_reference": f"{agree}/{len(sub)}",
        "cores": os.cpu_count(),
        "target_answers_per_s": 300,
    }
    print(f"sdlens grade: {len(rows)} answers in {wall:.2f} s end to end ({result['answers_per_s']} answers/s)")
    print(f"reference (sequential math-verify, main thread): {result['reference_answers_per_s']} answers/s")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
