r"""EGRSD-style entropy-gated reinforced self-distillation (after arXiv 2605.13255; abstract only, sdlens' forms).

The abstract names three factors per token: a reward-grounded direction, a teacher-student likelihood-ratio
magnitude and a teacher-entropy gate with a nonzero floor; CL-EGRSD keeps a high-entropy position whose following
context quickly becomes confident. No equation is published; sdlens implements them as RLSD's advantage weight
times a gate (every form and constant below is sdlens' choice):

    delta_t = stopgrad(log p_T(y_t) - log p_S(y_t))
    w_t     = clip(exp(sign(A) * delta_t), 1 - c, 1 + c)                       (RLSD, c = 0.2)
    H~_t    = H_T,t, or with look-ahead k: min(H_T,t, mean(H_T,t+1..t+k))      (CL-EGRSD)
    g_t     = g_min + (1 - g_min) * exp(-H~_t / h)                             (g_min = 0.1, h = 1 nat)
    A_t     = A * ((1 - lambda) + lambda * w_t * g_t)                          (lambda = 0.5)

at tokens with a teacher (``A`` elsewhere). The direction is the sign of the GRPO advantage (never flipped: the
factor is positive), so a gated token simply moves less; the loss is TRL's clipped policy surrogate.
"""

from __future__ import annotations

import torch

__all__ = ["egrsd_advantages", "egrsd_gate", "lookahead_entropy"]


def lookahead_entropy(entropy: torch.Tensor, mask: torch.Tensor, k: int) -> torch.Tensor:
    """``min(H_t, mean of the next k valid positions' H)`` (``H_t`` itself where none follows, or ``k == 0``)."""
    if k <= 0:
        return entropy
    valid = mask.ne(0).float()
    h = entropy.float() * valid
    T = h.shape[-1]
    # sums over t+1..t+k from a cumulative sum with a zero column in front
    cs = torch.nn.functional.pad(h.cumsum(-1), (1, 0))
    cn = torch.nn.functional.pad(valid.cumsum(-1), (1, 0))
    idx = torch.arange(T, device=h.device)
    lo, hi = idx + 1, (idx + 1 + k).clamp(max=T)
    total = cs[..., hi] - cs[..., lo]
    count = cn[..., hi] - cn[..., lo]
    ahead = total / count.clamp(min=1.0)
    return torch.where(count > 0, torch.minimum(entropy.float(), ahead), entropy.float())


def egrsd_gate(entropy: torch.Tensor, g_min: float, scale: float) -> torch.Tensor:
    """``g_min + (1 - g_min) * exp(-H / scale)``: 1 for a certain teacher, ``g_min`` for a very uncertain one."""
    return g_min + (1.0 - g_min) * torch.exp(-entropy.float() / scale)


def egrsd_advantages(
    seq_advantages: torch.Tensor,
    log_ratio: torch.Tensor,
    gate: torch.Tensor,
    mask: torch.Tensor,
    *,
    lam: float = 0.5,
    ratio_clip: float = 0.2,
) -> torch.Tensor:
    """Per-token advantages ``[B, T]`` (see the module doc) from ``log_ratio`` = ``log p_T(y_t) - log p_S(y_t)`` and
    ``gate`` = :func:`egrsd_gate` of the (look-ahead) teacher entropy; ``mask``: tokens with a teacher."""
    a = seq_advantages.reshape(-1, 1).float().expand(mask.shape[0], mask.shape[1])
    w = torch.exp(torch.sign(a) * log_ratio.detach().float()).clamp(1.0 - ratio_clip, 1.0 + ratio_clip)
    shaped = a * ((1.0 - lam) + lam * w * gate)
    return torch.where(mask.ne(0), shaped, a).clone()
