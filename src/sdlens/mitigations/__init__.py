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
- :mod:`~sdlens.mitigations.trainer`: the trainer subclass that applies them; :mod:`~sdlens.mitigations.presets`:
  one named preset per mitigation (``MITIGATION_PRESETS``), usable wherever a train preset name is.

The options are :class:`sdlens.train.config.TrainConfig` fields; :mod:`~sdlens.mitigations.options` checks them.
This package imports torch / TRL only in the modules that need them.
"""

from sdlens.mitigations.options import RICHNESS, active_mitigations, validate_mitigations
from sdlens.mitigations.presets import MITIGATION_PRESETS

__all__ = ["MITIGATION_PRESETS", "RICHNESS", "active_mitigations", "validate_mitigations"]
