"""Hedge-aware distillation (issue 10, part 2): the distillation loss treats hedge-word positions differently.

The paper's teacher, reading a correct solution, assigns low probability to "wait", "hmm", "maybe" where the student
wrote them; descending the divergence there is what teaches the student to stop hedging (docs/paper.md 12.2). Two
per-token changes of the SDPO loss, chosen by token class (a position is a *hedge* position when its token belongs
to a hedge word of ``hedge_lexicon``, :func:`sdlens.epistemic.tokens.hedge_position_mask`):

- **weighting**: ``loss_t *= hedge_weight`` at hedge positions (``0``: excluded, ``1``: unchanged); the weight is
  detached, so those positions pass no gradient at ``0``. The per-sequence mean keeps its denominator (the number of
  distilled tokens), as for TRL's other per-token weights.
- **per-class clipping**: ``loss_t = min(loss_t, hedge_clip)`` at hedge positions and ``min(loss_t, other_clip)``
  elsewhere (either cap optional). A clipped position keeps its value in the loss but passes no gradient, like
  PPO's clip; clipping acts on the per-token loss as it enters the mean (after the IS weight).
"""

from __future__ import annotations

import torch

__all__ = ["class_clip", "hedge_weights"]


def hedge_weights(hedge_mask: torch.Tensor, weight: float) -> torch.Tensor | None:
    """Per-token weights ``[B, T]``: ``weight`` at hedge positions, 1 elsewhere; ``None`` when ``weight == 1``."""
    if weight == 1.0:
        return None
    one = torch.ones(hedge_mask.shape, dtype=torch.float32, device=hedge_mask.device)
    return torch.where(hedge_mask.bool(), torch.full_like(one, float(weight)), one)


def class_clip(
    per_token_loss: torch.Tensor,
    hedge_mask: torch.Tensor,
    hedge_clip: float | None = None,
    other_clip: float | None = None,
) -> torch.Tensor:
    """``min(loss, cap)`` with the cap of each position's class (``None``: that class is not clipped)."""
    if hedge_clip is None and other_clip is None:
        return per_token_loss
    inf = float("inf")
    hedge = hedge_mask.bool()
    cap = torch.where(
        hedge,
        torch.full_like(per_token_loss, inf if hedge_clip is None else float(hedge_clip)),
        torch.full_like(per_token_loss, inf if other_clip is None else float(other_clip)),
    )
    return torch.minimum(per_token_loss, cap)
