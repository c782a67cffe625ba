"""Benchmark: `sdlens analyze --lexicon paper` vs the paper's own algorithm on a paper-style eval JSONL.

The reference is the paper's check_epistemic_tokens.py algorithm restated: ``json.loads`` per line, then
``response.lower().count(word)`` for the 10 words over ``generated_responses``. Both run in this process on
the same file (warm page cache, each timed best-of-N); the counts must be identical. The file has 16 responses
per problem, thinking and answer copies (as the paper's eval writes), LaTeX, newlines and some non-ASCII text.

    python bench/analyze.py --mb 150            # prints a table, then one JSON line
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

WORDS = ["wait", "hmm", "perhaps", "maybe", "actually", "alternatively", "seems", "might", "likely", "check"]
FILLER = (  # noqa: SIM905 - a sentence is easier to read than a list
    "so we have the equation x^2 + 3x - 4 = 0 and then factor it into (x + 4)(x - 1) = 0 which gives two "
    "roots let us compute \\frac{a}{b} + \\sqrt{2} the area is 12 square units therefore the sum is "
    "\\boxed{17} since 3 + 14 = 17 note that n \\geq 2 implies the product is even über café 数学"
).split()
HEDGES = [
    "Wait,",
    "wait",
    "Hmm,",
    "hmm",
    "perhaps",
    "Maybe",
    "actually",
    "Alternatively,",
    "seems",
    "might",
    "likely",
    "unlikely",
    "check",
    "checking",
    "double-check",
]


def make_file(path: Path, mb: float, seed: int = 0) -> None:
    rng = random.Random(seed)
    target = int(mb * 1e6)
    size = 0
    idx = 0
    with open(path, "w", encoding="utf-8") as f:
        while size < target:
            responses = []
            for _ in range(16):
                n = rng.randint(300, 2500)
                words = [rng.choice(HEDGES) if rng.random() < 0.02 else rng.choice(FILLER) for _ in range(n)]
                for k in range(0, n, rng.randint(15, 40)):
                    words[k] += "\n"
                thinking = " ".join(words)
                responses.append(f"{thinking}\n</think>\n\nThe answer is \\boxed{{{rng.randint(0, 999)}}}.")
            rec = {
                "idx": idx,
                "question": "Find the sum. Please reason step by step, and put your final answer within \\boxed{}.",
                "gold_answer": "17",
                "generated_responses": responses,
                "answer_responses": [r.split("</think>")[-1] for r in responses],
                "thinking_contents": [r.split("</think>")[0] for r in responses],
                "answers_correctness": [rng.random() < 0.4 for _ in responses],
                "response_token_lengths": [len(r) // 4 for r in responses],
            }
            line = json.dumps(rec, ensure_ascii=idx % 2 == 0) + "\n"
            f.write(line)
            size += len(line.encode())
            idx += 1


def reference(path: Path) -> dict[str, int]:
    totals = dict.fromkeys(WORDS, 0)
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            for resp in json.loads(line).get("generated_responses", []):
                low = resp.lower()
                for w in WORDS:
                    totals[w] += low.count(w)
    return totals


def best_of(fn, repeats: int):
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=150, help="size of the generated JSONL in MB (>= 150 for the target)")
    ap.add_argument("--file", type=Path, help="use this paper-format file instead of generating one")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from sdlens.epistemic.analyze import AnalyzeConfig, analyze
    from sdlens.epistemic.count import _kernel

    tmp = None
    path = args.file
    if path is None:
        tmp = tempfile.TemporaryDirectory()
        path = Path(tmp.name) / "paper_eval.jsonl"
        make_file(path, args.mb)
    size_mb = path.stat().st_size / 1e6
    reference(path)  # warm the page cache
    t_ref, ref = best_of(lambda: reference(path), args.repeats)
    t_lib, res = best_of(lambda: analyze([path], AnalyzeConfig(lexicon="paper")), args.repeats)
    got = {w: d["total"] for w, d in res["per_word"].items()}
    t_cli, proc = best_of(
        lambda: subprocess.run(
            [sys.executable, "-m", "sdlens.cli", "analyze", str(path), "--json"],
            capture_output=True,
            text=True,
            check=True,
        ),
        args.repeats,
    )
    cli_totals = {w: d["total"] for w, d in json.loads(proc.stdout)["per_word"].items()}
    identical = got == ref and cli_totals == ref
    print(
        f"file: {size_mb:.1f} MB, {res['n_problems']} problems, {res['n_responses']} responses, "
        f"{res['total']} hedges; kernel built: {_kernel() is not None}; cores: {os.cpu_count()}"
    )
    print(f"reference (json.loads + lower().count): {t_ref:.3f} s  ({size_mb / t_ref:.0f} MB/s)")
    print(f"sdlens analyze (library call):         {t_lib:.3f} s  ({size_mb / t_lib:.0f} MB/s)  x{t_ref / t_lib:.1f}")
    print(f"sdlens analyze (CLI process, incl. startup): {t_cli:.3f} s  x{t_ref / t_cli:.1f}")
    print(f"identical counts: {identical}")
    print(
        json.dumps(
            {
                "mb": round(size_mb, 1),
                "reference_s": round(t_ref, 4),
                "sdlens_s": round(t_lib, 4),
                "sdlens_cli_s": round(t_cli, 4),
                "speedup": round(t_ref / t_lib, 2),
                "speedup_cli": round(t_ref / t_cli, 2),
                "identical": identical,
            }
        )
    )
    if tmp:
        tmp.cleanup()
    if not identical:
        sys.exit(1)


if __name__ == "__main__":
    main()
