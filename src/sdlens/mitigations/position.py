r"""PW-OPSD's position weights (arXiv 2605.21606; its code's "moderate" schedule).

Teacher reliability rises along a response (the paper's position score has AUROC 0.83 for teacher-token
reliability), so early tokens count less in the distillation loss:

    f_t = (k_t - 0.5) / T_i                        k_t = 1-based index of t among sequence i's distilled tokens
    w_t = w_min + (1 - w_min) * sigmoid((f_t - center) / width)

with (w_min, center, width) = (0.25, 0.30, 0.10). The weights multiply the per-token distillation loss (detached);
each sequence's mean keeps its denominator T_i, as in the paper's code ``(1/T_i) sum_t w_t l_t``.
"""

from __future__ import annotations

import torch

__all__ = ["position_weights"]


def position_weights(mask: torch.Tensor, w_min: float, center: float, width: float) -> torch.Tensor:
    """Per-token weights ``[B, T]`` for the positions where ``mask`` is nonzero (1 elsewhere)."""
    valid = mask.ne(0)
    k = valid.long().cumsum(-1).float()  # 1-based rank among the sequence's valid tokens
    length = valid.sum(-1, keepdim=True).clamp(min=1).float()
    frac = (k - 0.5) / length
    w = w_min + (1.0 - w_min) * torch.sigmoid((frac - center) / width)
    return torch.where(valid, w, torch.ones_like(w))
