"""The mitigations' run state, saved with every checkpoint and restored by ``--resume``.

Two mitigations carry state that the weights do not: the detector-switched GRPO mix (whether the switch fired,
and at which step: from then on ``w = mix_on_suppression``) and AntiSD's entropy gate (``H_warm`` calibrated over
the warm-up, the running sums behind it, and whether the gate is open). A resumed run that lost them would
distil at ``w = 1`` again, or recalibrate ``H_warm`` on a later, different entropy. Each checkpoint gets
``sdlens_mitigations.json``; a resume restores it before the first step, and refuses in one line when a run that
needs it resumes from a checkpoint without it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from sdlens.errors import InputError
from sdlens.runfolder import atomic_path

__all__ = ["MITIGATION_STATE_FILE", "MitigationStateCallback", "restore_state", "run_state"]

MITIGATION_STATE_FILE = "sdlens_mitigations.json"


def run_state(trainer: Any) -> dict[str, Any]:
    """The state to save: ``mix`` (``switched_at``, ``weight``) and ``antisd_gate`` (the gate's fields)."""
    out: dict[str, Any] = {}
    switch = trainer.mixing_switch
    if switch is not None:
        out["mix"] = {"switched_at": switch.switched_at, "weight": switch.weight}
    if trainer.research is not None and trainer.research.antisd:
        out["antisd_gate"] = asdict(trainer.antisd_gate)
    return out


def restore_state(trainer: Any, checkpoint: Path) -> dict[str, Any]:
    """Load ``checkpoint``'s mitigation state into ``trainer``; what was restored is returned."""
    path = Path(checkpoint) / MITIGATION_STATE_FILE
    if not path.is_file():
        raise InputError(
            checkpoint,
            f"holds no {MITIGATION_STATE_FILE}: the GRPO-mix switch / AntiSD gate of this run cannot be restored; "
            "resume from a checkpoint that has it, or start a new run",
        )
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(path, f"unreadable mitigation state ({e})") from None
    switch = trainer.mixing_switch
    if switch is not None:
        if "mix" not in saved:
            raise InputError(path, "no GRPO-mix state, but this run switches the mix on suppression", field="mix")
        switch.switched_at = saved["mix"]["switched_at"]
        if switch.switched_at is not None:
            trainer.mix_weight = switch.weight
    if trainer.research is not None and trainer.research.antisd:
        if "antisd_gate" not in saved:
            raise InputError(path, "no AntiSD gate state, but this run uses AntiSD", field="antisd_gate")
        names = {f.name for f in fields(trainer.antisd_gate)}
        for name, value in saved["antisd_gate"].items():
            if name in names:
                setattr(trainer.antisd_gate, name, value)
    return saved


class MitigationStateCallback(TrainerCallback):
    """Writes the trainer's mitigation state into each checkpoint folder (main process; replaced atomically)."""

    def __init__(self, trainer: Any):
        self.trainer = trainer

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if not ckpt.is_dir():
            return
        with atomic_path(ckpt / MITIGATION_STATE_FILE) as tmp:
            tmp.write_text(json.dumps(run_state(self.trainer)) + "\n", encoding="utf-8")
