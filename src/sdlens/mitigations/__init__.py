"""Mitigations of epistemic suppression in self-distillation, as options of the SDPO trainer (docs/mitigations.md).

- :mod:`~sdlens.mitigations.context`: the teacher context-richness ladder (``teacher_richness``).
- :mod:`~sdlens.mitigations.hedge`: hedge-aware distillation (``hedge_weight``, ``hedge_clip``, ``other_clip``).
- :mod:`~sdlens.mitigations.mixing`: GRPO mixing switched on by the suppression detector (``mix_on_suppression``).
- :mod:`~sdlens.mitigations.antisd`: the AntiSD-style sign-flipped PMI advantage with its entropy gate (``antisd``).
- the literature's follow-up methods (issue 21): :mod:`~sdlens.mitigations.purified` (Purified OPSD's PMI target),
  :mod:`~sdlens.mitigations.rlcsd` (RLCSD's hint contrast), :mod:`~sdlens.mitigations.position` (PW-OPSD's position
  weights), :mod:`~sdlens.mitigations.egrsd` (EGRSD-style entropy-gated advantages), :mod:`~sdlens.mitigations.ssopd`
  (SSOPD-style shortest-correct-teaches-longest-wrong), with their teacher builders in
  :mod:`~sdlens.mitigations.builders`.
- :mod:`~sdlens.mitigations.options`: the options themselves (:class:`SDPOResearchConfig`, also fields of
  :class:`sdlens.train.config.TrainConfig`) and their checks; :mod:`~sdlens.mitigations.presets`: one named preset
  per mitigation (``MITIGATION_PRESETS``), usable wherever a train preset name is.

:class:`sdlens.train.sdpo_trainer.SdlensSDPOTrainer` applies them (its ``research`` argument).
This package imports torch / TRL only in the modules that need them.
"""

from sdlens.mitigations.options import RICHNESS, SDPOResearchConfig, active_mitigations, validate_mitigations
from sdlens.mitigations.presets import MITIGATION_PRESETS

__all__ = ["MITIGATION_PRESETS", "RICHNESS", "SDPOResearchConfig", "active_mitigations", "validate_mitigations"]
