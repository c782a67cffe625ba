r"""RLCSD: the teacher under a correct hint contrasted with the teacher under wrong hints (arXiv 2606.11709, after
its code's ``compute_policy_loss_rlcsd``).

For rollout ``i`` of a group with at least one correct and one wrong rollout: the positive hint ``h+`` is a correct
sibling other than ``i``, the negatives ``h-_1..h-_K`` up to ``K_max`` wrong siblings other than ``i``. All hints use
the same template (the paper's SDPO teacher prompt, "Correct solution:" for every hint: wrong hints are labelled
correct too, as in RLCSD, so the prompts differ only in the hint). Per sampled token:

    e_t = log p_T(y_t | x, h+) - [logsumexp_k log p_T(y_t | x, h-_k) - log K]      (K-marginalised negatives)
    r_t = clip(scale * tanh(e_t / tau), -r_max, r_max)                             (scale = beta * lambda = 0.5)
    m_t = 1[|r_t| > delta]
    A~_t = A_i + m_t r_t, clamped to A_i's sign: max(., 0) if A_i > 0, min(., 0) if A_i < 0, 0 if A_i = 0
    L   = mean_{t: m_t = 0} clipPG(rho_t, A_i) + eta * mean_{t: m_t = 1} clipPG(rho_t, A~_t)

each mean over that set's tokens in the micro-batch. tau = 0.02, delta = 0.02, eta = 1, r_max = 2, K_max = 4 (the
code's configs). Rollouts without a usable group have ``m_t = 0`` everywhere: plain GRPO (RLCSD drops them).
"""

from __future__ import annotations

import math

import torch

__all__ = ["contrast_hints", "rlcsd_advantages", "rlcsd_contrast"]


def contrast_hints(
    rewards: list[float], group_size: int, *, threshold: float = 0.5, max_negatives: int = 4
) -> list[tuple[int | None, list[int]]]:
    """Per rollout ``(positive, negatives)``: the first correct sibling other than itself and the first
    ``max_negatives`` wrong siblings other than itself; ``(None, [])`` when either is missing."""
    if group_size < 1 or len(rewards) % group_size:
        raise ValueError(f"{len(rewards)} rewards do not form groups of {group_size}")
    out: list[tuple[int | None, list[int]]] = []
    for i in range(len(rewards)):
        start = i - i % group_size
        others = [j for j in range(start, start + group_size) if j != i]
        pos = next((j for j in others if rewards[j] >= threshold), None)
        neg = [j for j in others if rewards[j] < threshold][:max_negatives]
        out.append((pos, neg) if pos is not None and neg else (None, []))
    return out


def rlcsd_contrast(pos_logps: torch.Tensor, neg_logps: torch.Tensor, neg_mask: torch.Tensor) -> torch.Tensor:
    """``e_t`` ``[B, T]`` from the positive teacher's ``[B, T]`` and the negatives' ``[B, K, T]`` log-probs of the
    sampled tokens; ``neg_mask`` ``[B, K]`` marks the real negatives (rows without any give 0)."""
    valid = neg_mask.ne(0)
    filled = neg_logps.float().masked_fill(~valid[..., None], -math.inf)
    count = valid.sum(-1, keepdim=True).float()  # [B, 1]
    marginal = torch.logsumexp(filled, dim=1) - torch.log(count.clamp(min=1.0))
    e = pos_logps.float() - marginal
    return torch.where(count > 0, e, torch.zeros_like(e))


def rlcsd_advantages(
    seq_advantages: torch.Tensor,
    contrast: torch.Tensor,
    mask: torch.Tensor,
    *,
    tau: float = 0.02,
    scale: float = 0.5,
    threshold: float = 0.02,
    r_max: float = 2.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(A~ [B, T], selected [B, T] bool)``; ``mask``: tokens of rollouts with a contrast."""
    a = seq_advantages.reshape(-1, 1).float().expand(contrast.shape[0], contrast.shape[1])
    r = (scale * torch.tanh(contrast.detach().float() / tau)).clamp(-r_max, r_max)
    selected = (r.abs() > threshold) & mask.ne(0)
    shaped = a + selected.float() * r
    shaped = torch.where(a > 0, shaped.clamp(min=0.0), torch.where(a < 0, shaped.clamp(max=0.0), torch.zeros_like(a)))
    return torch.where(selected, shaped, a).clone(), selected
