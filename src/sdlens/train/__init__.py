"""Training on TRL 1.16 with the paper's setups: SDPO (self-distillation), GRPO, SFT (issue 5, docs/train.md).

- :mod:`sdlens.train.presets`: named presets (``sdpo-paper``, ``sdpo-paper-nothink``, ``sdpo-paper-ema``,
  ``grpo-paper``, ``sdpo-coverage``, ``grpo-coverage``, ``sft``), each value with its source in the paper.
- :mod:`sdlens.train.config`: :class:`TrainConfig` (YAML-loadable, layered over presets).
- :mod:`sdlens.train.teacher`: the paper's teacher context (templates, demonstration choice, thinking removal that
  handles pre-opened ``<think>`` templates) as a drop-in builder for TRL's ``SDPOTrainer``.
- :mod:`sdlens.train.rewards`: rewards from the sdlens graders (``paper-reward``, ``math-verify``).
- :mod:`sdlens.train.data`: verl parquet / JSONL / hub datasets -> TRL datasets (duplicated rows stay groups).
- :mod:`sdlens.train.sdpo_trainer`: ``SdlensSDPOTrainer`` / ``SdlensSDPOConfig``, the one SDPO trainer (TRL's, with
  the chunked loss, the paper's teacher context, telemetry hooks and the research options of :mod:`sdlens.mitigations`).
- :mod:`sdlens.train.runner`: :func:`run_train`, :func:`dry_run`: the glue around the trainers, resume.
- :mod:`sdlens.train.tiny`: tiny random models with a calibrated stop rate for CPU smoke runs.
- :mod:`sdlens.train.sharding`: FSDP on CPU-only machines, the EMA teacher's checkpoint from sharded weights.

Heavy libraries (torch, transformers, trl) are imported only when a function needs them.
"""

from __future__ import annotations

from sdlens.imports import lazy_attributes

__all__ = [
    "PRESETS",
    "TrainConfig",
    "build_teacher_messages",
    "build_tiny_model",
    "dry_run",
    "get_preset",
    "remove_thinking_trace",
    "resolve_config",
    "run_train",
]

_LAZY = {
    "PRESETS": "sdlens.train.presets",
    "get_preset": "sdlens.train.presets",
    "TrainConfig": "sdlens.train.config",
    "resolve_config": "sdlens.train.config",
    "build_teacher_messages": "sdlens.train.teacher",
    "remove_thinking_trace": "sdlens.train.teacher",
    "run_train": "sdlens.train.runner",
    "dry_run": "sdlens.train.runner",
    "build_tiny_model": "sdlens.train.tiny",
}


__getattr__ = lazy_attributes(__name__, _LAZY)
