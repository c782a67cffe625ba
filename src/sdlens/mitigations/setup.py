"""Wire a built SDPO trainer to its config's mitigations (called by :func:`sdlens.train.runner.build_trainer`)."""

from __future__ import annotations

from typing import Any

from sdlens.imports import import_callable
from sdlens.mitigations.context import LadderTeacherContextBuilder
from sdlens.mitigations.state import MitigationStateCallback, needs_state
from sdlens.mitigations.trainer import MitigationSettings

__all__ = ["configure_trainer"]


def configure_trainer(trainer: Any, cfg: Any, *, state_fn=None) -> None:
    """Apply ``cfg``'s mitigations to ``trainer`` (a ``mitigation_trainer_class`` instance): the context ladder's
    teacher builder, the loss options and, for ``mix_on_suppression``, the detector switch (``state_fn`` overrides
    the epistemic monitor's detector, attached later by ``run_train``: any no-argument callable returning ``ok`` /
    ``warning`` / ``suppressing``)."""
    trainer.configure_mitigations(MitigationSettings.from_config(cfg))
    if cfg.teacher_richness is not None:
        old = trainer.teacher_context_builder
        trainer.teacher_context_builder = LadderTeacherContextBuilder(
            trainer,
            cfg.teacher_richness,
            truncation=getattr(old, "truncation", cfg.reprompt_truncation),
            log_path=getattr(old, "log_path", None),
            log_per_batch=getattr(old, "log_per_batch", cfg.log_teacher_prompts),
        )
    if cfg.purified or cfg.rlcsd or cfg.ssopd:  # the follow-up methods' builders (sdlens.mitigations.builders)
        from sdlens.mitigations import builders

        old = trainer.teacher_context_builder
        kwargs = {
            "truncation": getattr(old, "truncation", cfg.reprompt_truncation),
            "log_path": getattr(old, "log_path", None),
            "log_per_batch": getattr(old, "log_per_batch", cfg.log_teacher_prompts),
        }
        if cfg.purified:
            trainer.teacher_context_builder = builders.PurifiedTeacherContextBuilder(trainer, **kwargs)
        elif cfg.rlcsd:
            n = cfg.rlcsd_negatives
            trainer.teacher_context_builder = builders.ContrastTeacherContextBuilder(trainer, n, **kwargs)
        else:
            trainer.teacher_context_builder = builders.SsopdTeacherContextBuilder(trainer, **kwargs)
    if cfg.mix_on_suppression is not None:
        from sdlens.mitigations.mixing import MixingSwitch, monitor_state

        if state_fn is None:
            state_fn = import_callable(cfg.mix_detector, "mix_detector")(trainer) if cfg.mix_detector else None
        fn = state_fn if state_fn is not None else monitor_state(trainer)
        trainer.mixing_switch = MixingSwitch(trainer, fn, cfg.mix_on_suppression, cfg.mix_trigger)
        trainer.add_callback(trainer.mixing_switch)
    if needs_state(cfg):
        trainer.add_callback(MitigationStateCallback(trainer))
