"""Benchmark: does the compiled JSON scanner earn its place? The same `analyze` library call on a paper-format file,
through the scanner (``fast=True``: the C code reads the raw JSONL bytes) and through the ordinary reader
(``fast=False``: orjson per line, then the compiled counting kernel), in one process on the same file (warm page
cache, best of N). The counts must be identical; the ratio is what is reported.

    python bench/scanner.py --mb 150            # a table, then one JSON line
    python bench/scanner.py --mb 1000 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from analyze import make_file
from sdlens.epistemic.analyze import AnalyzeConfig, analyze

KEYS = ("n_problems", "n_responses", "total", "per_word", "position_profile")


def best_of(repeats: int, fn) -> tuple[float, dict]:
    best, out = float("inf"), {}
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=float, default=150, help="size of the generated JSONL in MB")
    ap.add_argument("--file", type=Path, help="use this paper-format file instead of generating one")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", action="store_true", help="print only the JSON line")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.file
        if path is None:
            path = Path(tmp) / "bench.jsonl"
            make_file(path, args.mb)
        size_mb = path.stat().st_size / 1e6
        scanner_s, fast = best_of(args.repeats, lambda: analyze([path], AnalyzeConfig(fast=True)))
        reader_s, slow = best_of(args.repeats, lambda: analyze([path], AnalyzeConfig(fast=False)))
    if {k: fast[k] for k in KEYS} != {k: slow[k] for k in KEYS}:
        raise SystemExit("the two paths disagree")
    result = {
        "mb": round(size_mb, 1),
        "scanner_s": round(scanner_s, 3),
        "reader_s": round(reader_s, 3),
        "scanner_speedup": round(reader_s / scanner_s, 2),
    }
    if not args.json:
        print(f"{size_mb:,.0f} MB: scanner {scanner_s:.2f} s, orjson reader + kernel {reader_s:.2f} s")
        print(f"scanner speed-up {reader_s / scanner_s:.2f}x (keep it only at >= 1.5x)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
