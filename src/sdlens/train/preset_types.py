"""What a training preset is: named values for ``TrainConfig`` / TRL config fields, each with where it comes from.

Apart from the preset table (:mod:`sdlens.train.presets`) so that the research presets
(:mod:`sdlens.mitigations.presets`) can be declared with the same types and the table can include them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Preset", "Setting"]


@dataclass(frozen=True)
class Setting:
    value: Any
    why: str  # where the value comes from (docs/paper.md section) or why it is set


@dataclass(frozen=True)
class Preset:
    name: str
    algo: str  # sdpo | grpo | sft
    summary: str
    settings: dict[str, Setting] = field(default_factory=dict)
    base: str | None = None  # a preset whose settings come first
