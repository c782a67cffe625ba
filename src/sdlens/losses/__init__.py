"""Training losses. ``distill``: the memory-lean SDPO self-distillation loss (issue 6, docs/distill_loss.md).

``heads`` (imported on demand, it needs torch): hidden states instead of logits, and the LM head weight whole on
every rank, for :class:`sdlens.train.sdpo_trainer.SdlensSDPOTrainer`, which computes that loss.
"""

from sdlens.losses import distill as _distill
from sdlens.losses.distill import *  # noqa: F403 - the package is the loss module's public face

__all__ = list(_distill.__all__)
