"""Helpers for the training tests (no tests here): a reward with known successes, importable by a subprocess
(``--reward test_train_helpers:first_wins`` with ``tests/`` on ``PYTHONPATH``)."""

from __future__ import annotations

GROUP = 4  # num_generations the tests use


def first_wins(prompts=None, completions=None, answer=None, **kwargs) -> list[float]:
    """1.0 for the first rollout of each group whose row's answer is ``first-wins``, else 0.0.

    So in a ``first-wins`` group rollout 0 is a lone success (no *other* successful sibling: no teacher) and rollouts
    1..3 have it as their demonstration; in a ``none`` group nobody has a teacher. Rollouts of a group are
    consecutive in TRL's batches, and the tests keep every process's share a whole number of groups.
    """
    return [1.0 if a == "first-wins" and i % GROUP == 0 else 0.0 for i, a in enumerate(answer)]


def shared_tiny(tmp_path_factory):
    """One calibrated tiny model per test session (built by the first test file that asks)."""
    import json

    from sdlens.train.tiny import build_tiny_model

    out = tmp_path_factory.getbasetemp() / "sdlens-train-tiny"
    info = out / "sdlens_tiny.json"
    if not info.is_file():
        build_tiny_model(out, mean_length=16)
    return out, json.loads(info.read_text())


def suppressing_from_step_2(trainer):
    """A ``mix_detector``: reports ``suppressing`` from optimizer step 2 on (a stand-in for the epistemic monitor,
    whose firing step depends on the model's hedging)."""
    return lambda: "suppressing" if trainer.state.global_step >= 2 else "ok"


def kill_when(proc, ready, *, group: bool = False, timeout: float = 300.0) -> None:
    """SIGKILL ``proc`` (its whole process group with ``group``: a launcher and its ranks) as soon as ``ready()``
    holds; fails if the process ends first or ``timeout`` seconds pass."""
    import os
    import signal
    import time

    deadline = time.time() + timeout
    try:
        while not ready():
            assert proc.poll() is None, "the run ended too early: " + proc.stderr.read()[-2000:]
            assert time.time() < deadline, "not ready in time"
            time.sleep(0.05)
        (os.killpg if group else os.kill)(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
