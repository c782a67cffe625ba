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
