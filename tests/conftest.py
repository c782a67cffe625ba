from __future__ import annotations

import json
from pathlib import Path

import pytest

from sdlens.grading import base as _grader_base

_BUILTIN_GRADERS = dict(_grader_base._REGISTRY)


@pytest.fixture(autouse=True)
def _restore_grader_registry():
    """Graders a test or a shared fixture registers (e.g. the experiment tests' ``parity``) do not leak into later
    tests' audits: after each test the registry is back to the built-in graders."""
    yield
    _grader_base._REGISTRY.clear()
    _grader_base._REGISTRY.update(_BUILTIN_GRADERS)


EPISTEMIC_WORDS = ["wait", "hmm", "perhaps", "maybe", "actually", "alternatively", "seems", "might", "likely", "check"]


def paper_script_numbers(path: Path, key: str = "generated_responses") -> dict:
    """The paper's check_epistemic_tokens.py algorithm, restated from its spec (docs/paper.md section 9.1)."""
    data = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                data.append(json.loads(line))
    totals = dict.fromkeys(EPISTEMIC_WORDS, 0)
    n_resp = 0
    for record in data:
        for resp in record.get(key, []):
            low = resp.lower()
            for w in EPISTEMIC_WORDS:
                totals[w] += low.count(w)
            n_resp += 1
    total = sum(totals.values())
    return {
        "problems": len(data),
        "responses": n_resp,
        "totals": totals,
        "total": total,
        "avg_per_resp": total / n_resp if n_resp else 0,
    }


@pytest.fixture
def shipped_data() -> Path:
    """The package's data folder (``data/math/evaluation``, ``data/math/coverage``), as installed."""
    from sdlens.benchmarks import shipped_path

    return shipped_path("math500").parents[1]


def write_lines(path: Path, lines: list[str | bytes]) -> Path:
    with open(path, "wb") as f:
        for line in lines:
            f.write(line if isinstance(line, bytes) else line.encode("utf-8"))
            f.write(b"\n")
    return path
