"""Benchmark: `sdlens analyze --lexicon paper` vs the paper's own algorithm on a paper-style eval JSONL.

The reference is the paper's check_epistemic_tokens.py algorithm restated: ``json.loads`` per line, then
``response.lower().count(word)`` for the 10 words over ``generated_responses``. Both run in this process on
the same file (warm page cache, each timed best-of-N); the counts must be identical. The file has 16 responses
per problem, thinking and answer copies (as the paper's eval writes), LaTeX, newlines and some non-ASCII text.

Two corpora: ``ordinary`` (the above) and ``special``, the same with one of the code points whose lower case
is ASCII or longer, or which match ASCII letters case-insensitively (Turkish ``İ`` U+0130, the Kelvin sign
U+212A, long ``ſ`` U+017F, dotless ``ı`` U+0131) in 90% of the responses. Each is timed as a library call and as
a CLI process (``sdlens analyze FILE --json``, the console script, interpreter start and imports included; it takes the
argparse path, ``sdlens.cli.fastpath``), beside the same command through the typer app (``cli_typer``) and the
serial floor: interpreter start + the imports the command cannot do without (numpy, orjson, the analyzer) +
the library call, each timed alone (``python -c pass`` and ``import numpy`` alone too, for scale). The CLI goes
below that floor by counting on one core while it imports on the other (``sdlens.epistemic.scan``). The CLI's
start-up alone is timed too: ``sdlens --help`` (the command table, ``sdlens.cli.commands``) against a bare
``python -c "import rich, typer"``, with the typer app's own rich ``--help`` (as ``sdlens --help`` ran before the
table) beside it.

    python bench/analyze.py --mb 150            # prints a table, then one JSON line
    python bench/analyze.py --mb 150 --json     # only the JSON line
    python bench/analyze.py --corpus none       # only the start-up timings
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
SPECIAL_WORDS = ["İstanbul", "İ", "300\u212a", "\u212aelvin", "ſ", "Dieſe", "ılık", "İYİ"]


def make_file(path: Path, mb: float, seed: int = 0, special: bool = False) -> None:
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
                if special and rng.random() < 0.9:
                    words[rng.randrange(n)] = rng.choice(SPECIAL_WORDS)
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


def best_of_interleaved(fns: dict, repeats: int) -> dict:
    """Best of N for each of ``fns``, taking turns (one call each per round), so a load that comes and goes on a
    shared machine falls on all of them alike; ``{name: (seconds, last output)}``."""
    best = {name: (float("inf"), None) for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            out = fn()
            best[name] = (min(best[name][0], time.perf_counter() - t), out)
    return best


def run_case(corpus: str, path: Path, repeats: int) -> dict:
    from sdlens.epistemic.analyze import AnalyzeConfig, analyze

    size_mb = path.stat().st_size / 1e6
    reference(path)  # warm the page cache
    t_ref, ref = best_of(lambda: reference(path), repeats)
    t_lib, res = best_of(lambda: analyze([path], AnalyzeConfig(lexicon="paper")), repeats)
    got = {w: d["total"] for w, d in res["per_word"].items()}
    timed = best_of_interleaved(
        {
            "cli": lambda: _sdlens("analyze", str(path), "--json"),
            "typer": lambda: _process("-c", TYPER_APP, "analyze", str(path), "--json"),
            "python": lambda: _process("-c", "pass"),
            "imports": lambda: _process("-c", FLOOR_IMPORTS, OPENBLAS_NUM_THREADS="1"),
            "numpy": lambda: _process("-c", "import numpy", OPENBLAS_NUM_THREADS="1"),
        },
        repeats,
    )
    (t_cli, proc), (t_typer, typer_proc) = timed["cli"], timed["typer"]
    t_python, t_imports, t_numpy = timed["python"][0], timed["imports"][0], timed["numpy"][0]
    cli_totals = {w: d["total"] for w, d in json.loads(proc.stdout)["per_word"].items()}
    floor = t_imports + t_lib  # the imports process includes the interpreter start
    return {
        "corpus": corpus,
        "mb": round(size_mb, 1),
        "n_problems": res["n_problems"],
        "n_responses": res["n_responses"],
        "reference_s": round(t_ref, 4),
        "sdlens_s": round(t_lib, 4),
        "sdlens_cli_s": round(t_cli, 4),
        "sdlens_cli_typer_s": round(t_typer, 4),
        "cli_floor_s": round(floor, 4),
        "python_start_s": round(t_python, 4),
        "floor_imports_s": round(t_imports, 4),
        "numpy_import_s": round(t_numpy, 4),
        "speedup": round(t_ref / t_lib, 2),
        "speedup_cli": round(t_ref / t_cli, 2),
        "speedup_cli_typer": round(t_ref / t_typer, 2),
        "speedup_cli_floor": round(t_ref / floor, 2),
        "identical": got == ref and cli_totals == ref and typer_proc.stdout == proc.stdout,
    }


# the typer app itself, as `sdlens analyze` ran before the argparse path (sdlens.cli.fastpath)
TYPER_APP = "from sdlens.cli.typer_app import app; app()"
# what `sdlens analyze FILE --json` cannot do without (numpy with one BLAS thread, as the CLI imports it)
FLOOR_IMPORTS = "import numpy, orjson, sdlens.cli.fastpath, sdlens.epistemic.analyze"


def _sdlens(*args: str) -> subprocess.CompletedProcess:
    """``sdlens ARGS`` as a user runs it: the console script beside this interpreter (``python -m sdlens.cli`` where
    there is none)."""
    script = Path(sys.executable).with_name("sdlens")
    argv = [str(script)] if script.exists() else [sys.executable, "-m", "sdlens.cli"]
    return subprocess.run([*argv, *args], capture_output=True, text=True, check=True)


def _process(*argv: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *argv], capture_output=True, text=True, check=True, env={**os.environ, **env}
    )


def startup(repeats: int) -> dict:
    """`sdlens --help` as a process against a bare `python -c "import rich, typer"` (best of N each, in turns), with
    the typer app's own rich help beside it."""
    timed = best_of_interleaved(
        {
            "bare": lambda: _process("-c", "import rich, typer"),
            "help": lambda: _sdlens("--help"),
            "typer": lambda: _process("-c", TYPER_APP, "--help"),
        },
        repeats,
    )
    t_bare, t_help, t_typer = (timed[k][0] for k in ("bare", "help", "typer"))
    return {
        "help_s": round(t_help, 4),
        "bare_import_s": round(t_bare, 4),
        "help_ratio": round(t_help / t_bare, 2),
        "help_typer_s": round(t_typer, 4),
        "help_typer_ratio": round(t_typer / t_bare, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=150, help="size of each generated JSONL in MB (>= 150 for the target)")
    ap.add_argument("--file", type=Path, help="use this paper-format file instead of generating the corpora")
    ap.add_argument(
        "--corpus",
        choices=["ordinary", "special", "both", "none"],
        default="both",
        help="which corpora to time; none: only the start-up",
    )
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", action="store_true", help="print only the JSON line")
    args = ap.parse_args()

    from sdlens.epistemic.kernel import compiled_kernel

    # an installed package has its bytecode compiled (pip does it at install); where PYTHONDONTWRITEBYTECODE is set
    # every process would compile sdlens' modules again (~40 ms on a busy 2-core machine): write it once here
    for argv in (("-m", "sdlens.cli", "--help"), ("-c", TYPER_APP, "--help"), ("-c", FLOOR_IMPORTS)):
        _process(*argv, PYTHONDONTWRITEBYTECODE="")
    cases = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.file is not None:
            cases.append(run_case("file", args.file, args.repeats))
        else:
            for corpus in {"both": ("ordinary", "special"), "none": ()}.get(args.corpus, (args.corpus,)):
                path = Path(tmp) / f"paper_eval_{corpus}.jsonl"
                make_file(path, args.mb, special=corpus == "special")
                cases.append(run_case(corpus, path, args.repeats))
                path.unlink()
    start = startup(max(10, args.repeats))
    out = {"kernel": compiled_kernel() is not None, "cores": os.cpu_count(), "cases": cases, **start}
    if not args.json:
        print(f"kernel built: {out['kernel']}; cores: {out['cores']}")
        print(
            "corpus    MB      reference   library call      CLI process       CLI via typer     serial floor identical"
        )
        for c in cases:
            print(
                f"{c['corpus']:<9} {c['mb']:<7} {c['reference_s']:.3f} s     "
                f"{c['sdlens_s']:.3f} s ({c['speedup']:.1f}x)  {c['sdlens_cli_s']:.3f} s ({c['speedup_cli']:.1f}x)  "
                f"{c['sdlens_cli_typer_s']:.3f} s ({c['speedup_cli_typer']:.1f}x)  "
                f"{c['cli_floor_s']:.3f} s ({c['speedup_cli_floor']:.1f}x)  {c['identical']}"
            )
        print(
            f"sdlens --help: {start['help_s']:.3f} s; python -c 'import rich, typer': {start['bare_import_s']:.3f} s "
            f"({start['help_ratio']:.2f}x); the typer app's rich help {start['help_typer_s']:.3f} s "
            f"({start['help_typer_ratio']:.2f}x)"
        )
    print(json.dumps(out))
    if not all(c["identical"] for c in cases):
        sys.exit(1)


if __name__ == "__main__":
    main()
