"""Helpers for the experiment tests (no tests here).

``parity`` is a real grader plugged in through :func:`sdlens.grading.register_grader`: a response is correct when its
length in characters is even. A tiny random model writes random text, so about half its samples pass and the
1-4-of-8 selection window, the first-correct solution and the regeneration round all have something to work on;
the verdict depends only on the generated text, never on the context the test expects.
"""

from __future__ import annotations

import json
from pathlib import Path

from sdlens.grading import Verdict, available_graders, register_grader


class ParityGrader:
    name = "parity"

    def __init__(self, workers=None, **_):  # the options sdlens passes to every grader (training rewards)
        self.workers = workers

    def grade(self, items, progress=None):
        out = [Verdict(str(len(r[0]) % 2), len(r[0]) % 2 == 0) for r in items]
        if progress:
            progress(len(out))
        return out


def register_parity() -> str:
    if "parity" not in available_graders():
        register_grader("parity", ParityGrader)
    return "parity"


def write_problems(path: Path, k: int) -> Path:
    """``k`` raw question / answer rows (the paper's instruction is appended when loaded)."""
    rows = [{"id": f"q{i}", "question": f"What is {i} plus {i}?", "answer": str(2 * i)} for i in range(k)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def tiny_model(tmp_path_factory) -> Path:
    """The calibrated tiny model shared with the training tests (mean completion 16 tokens)."""
    from test_train_helpers import shared_tiny

    return shared_tiny(tmp_path_factory)[0]


# ---------------------------------------------------------------- shared runs (built once per test session)

GEN = {"max_new_tokens": 16, "grader": "parity", "batch_size": 64}


def shared_richer_context(tmp_path_factory) -> Path:
    """A finished richer-context run of the tiny model: 6 problems scanned 4 at a time, n=8, 3 kept."""
    from sdlens.experiments.richer_context import RicherContextConfig, run_richer_context

    register_parity()
    root = tmp_path_factory.getbasetemp() / "sdlens-exp-rc"
    out = root / "run"
    if not (out / "summary.json").is_file():
        root.mkdir(parents=True, exist_ok=True)
        data = write_problems(root / "problems.jsonl", 6)
        cfg = RicherContextConfig(
            model=str(tiny_model(tmp_path_factory)), data=str(data), out=str(out), max_problems=3, scan_batch=4, **GEN
        )
        run_richer_context(cfg)
    return out


SFT_SMALL = {
    "max_steps": 2,
    "per_device_train_batch_size": 2,
    "gradient_accumulation_steps": 1,
    "max_length": 512,
    "save_strategy": "no",
    "learning_rate": 1e-3,
    "gradient_checkpointing": False,
}

RL_SMALL = {
    "prompts_per_step": 2,
    "mini_batches_per_step": 1,
    "num_generations": 4,
    "per_device_train_batch_size": 4,
    "max_completion_length": 12,
    "learning_rate": 1e-3,
    "warmup_steps": 0,
    "gradient_checkpointing": False,
    "max_steps": 1,
}


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
