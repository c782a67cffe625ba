"""Micro benchmark of the compiled counter (``sdlens.epistemic._fastcount``) against pure Python.

- ``scan_jsonl`` on a paper-style eval JSONL (16 responses per problem, thinking and answer copies, numbers,
  bools, LaTeX, ``\\n`` escapes, every other line ``ensure_ascii=False``) against the paper's algorithm:
  ``json.loads`` per line, then ``response.lower().count(word)`` for the 10 words over ``generated_responses``.
- ``count_strings`` against ``count_texts_reference`` on the decoded responses (substring, word, letter).

Totals must be identical. Timings are best-of-N in this process (warm page cache); each scan_jsonl line also
gives the CPU time / wall time of its best run: about 2 when two threads really ran at once, about 1 when the
machine had only one core to give (other load), so a missing 2-thread gain can be told from a serialized one.

    python bench/kernel_micro.py --mb 150
    python bench/kernel_micro.py --mb 150 --simd avx2 --simd avx512   # the scans at each of these SIMD levels
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# The test file and the reference algorithm are the end-to-end benchmark's own (bench/analyze.py).
sys.path.insert(0, str(Path(__file__).resolve().parent))
from analyze import WORDS, make_file, reference


def kernel_totals(fc, path: Path, threads: int, scope: str = "full") -> tuple[dict[str, int], int]:
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        res = fc.scan_jsonl(mm, "generated_responses", tuple(WORDS), "substring", scope, threads)
    stats = np.frombuffer(res["stats"], dtype=np.int64).reshape(-1, len(WORDS) + 12)
    n_python = int(np.frombuffer(res["status"], dtype=np.int64).sum())
    return dict(zip(WORDS, stats[:, : len(WORDS)].sum(axis=0).tolist(), strict=True)), n_python


def best_of(fn, repeats: int):
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def best_of_cpu(fn, repeats: int):
    """best wall time, the CPU/wall ratio of that run, and the output"""
    best, ratio, out = float("inf"), 0.0, None
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        if wall < best:
            best, ratio = wall, cpu / wall
    return best, ratio, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=150, help="size of the generated JSONL in MB")
    ap.add_argument("--file", type=Path, help="use this paper-format file instead of generating one")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--strings", type=int, default=2000, help="responses for the count_strings comparison")
    ap.add_argument(
        "--simd",
        action="append",
        help="time the scans at this SIMD level (scalar, sse2, avx2, avx512; repeatable); default: the one picked",
    )
    args = ap.parse_args()

    from sdlens.epistemic import _fastcount as fc
    from sdlens.epistemic.count import count_texts_reference, kernel_count_texts
    from sdlens.epistemic.lexicon import load_lexicon
    from sdlens.epistemic.segment import Scope

    tmp = None
    path = args.file
    if path is None:
        tmp = tempfile.TemporaryDirectory()
        path = Path(tmp.name) / "paper_eval.jsonl"
        make_file(path, args.mb)
    size_mb = path.stat().st_size / 1e6
    reference(path)  # warm the page cache
    t_ref, ref = best_of(lambda: reference(path), args.repeats)
    print(f"file: {size_mb:.1f} MB; cores: {os.cpu_count()}; SIMD: {fc._simd()}")
    print(f"reference (json.loads + lower().count): {t_ref:.3f} s  ({size_mb / t_ref:.0f} MB/s)")
    ok = True
    picked = fc._simd()
    for level in args.simd or [picked]:
        fc._simd(level)  # ValueError where this machine or build lacks the level
        for threads in (1, 2):
            t, ratio, (got, n_python) = best_of_cpu(lambda th=threads: kernel_totals(fc, path, th), args.repeats)
            same = got == ref and n_python == 0
            ok &= same
            print(
                f"scan_jsonl {level} threads={threads}: {t:.3f} s  ({size_mb / t:.0f} MB/s)  x{t_ref / t:.1f}  "
                f"cpu/wall {ratio:.2f}  identical={same}"
            )
    fc._simd(picked)
    t, _ = best_of(lambda: kernel_totals(fc, path, 1, "answer"), args.repeats)
    print(f"scan_jsonl threads=1 scope=answer: {t:.3f} s  ({size_mb / t:.0f} MB/s)")

    texts = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            texts.extend(json.loads(line)["generated_responses"])
            if len(texts) >= args.strings:
                break
    mb = sum(len(t.encode()) for t in texts) / 1e6
    for name in ("paper", "words", "companion"):
        lex = load_lexicon(name)
        t_r, want = best_of(lambda lx=lex: count_texts_reference(texts, lx, "full"), 1)
        t_k, have = best_of(lambda lx=lex: kernel_count_texts(fc, texts, lx, Scope.full), args.repeats)
        same = all(np.array_equal(getattr(want, k), getattr(have, k)) for k in ("counts", "n_chars", "n_words", "bins"))
        ok &= same
        print(
            f"count_strings {name:9s} ({len(texts)} responses, {mb:.0f} MB): reference {t_r:.3f} s, kernel "
            f"{t_k:.4f} s ({mb / t_k:.0f} MB/s)  x{t_r / t_k:.0f}  identical={same}"
        )
    if tmp:
        tmp.cleanup()
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
