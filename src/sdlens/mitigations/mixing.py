"""GRPO mixing switched on by the suppression detector (issue 10, part 3).

TRL's ``SDPOTrainer`` blends ``(1 - w) * policy_loss + w * distillation_loss`` with ``distillation_weight = w``; a
constant blend is just that TRL field (preset ``sdpo-grpo-mix``). Here the blend starts when hedging falls: the run
distills as configured (``w = 1`` in ``sdpo-paper``) until the suppression detector reports ``mix_trigger``
(``warning`` or ``suppressing``; a stronger state also fires), then uses ``w = mix_on_suppression`` for the rest of
the run (latched, so the loss does not flap with the detector).

The detector is anything callable with no arguments that returns its current state, ``"ok"``, ``"warning"`` or
``"suppressing"`` (:class:`DetectorState`); it is read at the end of every optimizer step. In ``sdlens train`` it is
the epistemic monitor's :class:`sdlens.monitor.Detector` (:func:`monitor_state`), which updates at each logging
step from the hedge rate of the student's rollouts. With ``w < 1`` the loss runs TRL's full-logit path (the policy
loss needs the student's logits).
"""

from __future__ import annotations

from typing import Any, Protocol

from transformers import TrainerCallback

__all__ = ["STATE_ORDER", "DetectorState", "MixingSwitch", "fires", "monitor_state"]

STATE_ORDER = {"ok": 0, "warning": 1, "suppressing": 2}


class DetectorState(Protocol):
    def __call__(self) -> str | None: ...


def fires(state: str | None, trigger: str) -> bool:
    """Whether a detector ``state`` is at least as strong as ``trigger``."""
    return state is not None and STATE_ORDER.get(state, 0) >= STATE_ORDER[trigger]


class MixingSwitch(TrainerCallback):
    """Sets ``trainer.mix_weight`` to ``weight`` the first time ``state_fn()`` reaches ``trigger``."""

    def __init__(self, trainer: Any, state_fn: DetectorState, weight: float, trigger: str = "suppressing"):
        if trigger not in STATE_ORDER or trigger == "ok":
            raise ValueError(f"mix_trigger must be warning or suppressing, got {trigger!r}")
        self.trainer = trainer
        self.state_fn = state_fn
        self.weight = float(weight)
        self.trigger = trigger
        self.switched_at: int | None = None

    def on_step_end(self, args, state, control, **kwargs):
        if self.switched_at is None and fires(self.state_fn(), self.trigger):
            self.switched_at = int(state.global_step)
            self.trainer.mix_weight = self.weight


def monitor_state(trainer: Any) -> DetectorState:
    """The state of the suppression detector of the epistemic monitor attached to ``trainer``
    (``trainer.epistemic_monitor``, set by :func:`sdlens.monitor.monitor_trainer`), read when called."""

    def state() -> str | None:
        monitor = getattr(trainer, "epistemic_monitor", None)
        if monitor is None:
            raise RuntimeError(
                "mix_on_suppression reads the suppression detector of sdlens.monitor, but none is attached: call "
                "sdlens.monitor.monitor_trainer(trainer) (sdlens train does when epistemic_monitor is on)"
            )
        return monitor.detector.state

    return state
