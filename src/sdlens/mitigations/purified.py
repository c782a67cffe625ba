r"""Purified OPSD: distil a PMI target instead of the privileged teacher (arXiv 2607.02234, equations as
transcribed from the paper; no code was published).

Three forward passes of the frozen base model on the student's rollout (besides the student's own):

    pi_T   = pi_0(. | y_<t, q, r)   the teacher prompt: question + reference (here: the successful sibling)
    pi_ref = pi_0(. | y_<t, r)      the same prompt with the question removed (reference only)
    P_0    = pi_0(. | y_<t, q)      the student's prompt (question only, clean base)

Over the whole vocabulary at every position:

    D(v)       = log pi_T(v) - log pi_ref(v)                  (what the question adds to the reference)
    D_c(v)     = D(v) - mean_v D(v)                           (centring: an unweighted vocabulary mean)
    D~(v)      = c * tanh(D_c(v) / c)                         (soft clip, c = 10)
    log P*(v)  = log P_0(v) + D~(v) / beta - log Z            (beta = 1; the optimum of E_P[D] - beta KL(P || P_0))
    loss_t     = JSD_alpha(pi_theta || P*)                    (sdpo-paper's generalized JSD, alpha = 0.5)

Distributions at the sampling temperature, like the rest of the trainer. The target is a nonlinear function of
three full next-token distributions, so it cannot go through the chunked loss's top-k kernel (which takes one
teacher's hidden state); :func:`purified_per_token` is its own chunked loop instead: per chunk of tokens the four
logit blocks exist only while that chunk is computed, and the backward recomputes them (activation checkpointing),
so no ``[B, T, V]`` tensor is ever held.
"""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint

__all__ = ["purified_per_token", "purified_target_logprobs", "without_question"]


def without_question(prompt):
    """The student prompt with the question text removed (the reference-only teacher's ``{prompt}``)."""
    if isinstance(prompt, str):
        return ""
    return [*prompt[:-1], {"role": "user", "content": ""}]


def purified_target_logprobs(
    teacher_logits: torch.Tensor, ref_logits: torch.Tensor, base_logits: torch.Tensor, clip: float, beta: float
) -> torch.Tensor:
    """``log P*`` over the last dimension from the three (temperature-scaled) logit tensors, float32."""
    log_t = torch.log_softmax(teacher_logits.float(), dim=-1)
    log_r = torch.log_softmax(ref_logits.float(), dim=-1)
    log_0 = torch.log_softmax(base_logits.float(), dim=-1)
    delta = log_t - log_r
    delta = delta - delta.mean(dim=-1, keepdim=True)
    delta = clip * torch.tanh(delta / clip)
    return torch.log_softmax(log_0 + delta / beta, dim=-1)


def _chunk_loss(hs, weight, ht, hr, h0, wt, alpha, temperature, clip, beta, mm_dtype):
    from sdlens.losses.distill import generalized_jsd

    def logits(h, w):
        w = w if mm_dtype is None else w.to(mm_dtype)
        return (h.to(w.dtype) @ w.T).float() / temperature

    with torch.no_grad():
        target = purified_target_logprobs(logits(ht, wt), logits(hr, wt), logits(h0, wt), clip, beta)
    student = torch.log_softmax(logits(hs, weight), dim=-1)
    return generalized_jsd(student, target, alpha)


def purified_per_token(
    student_hidden: torch.Tensor,
    student_weight: torch.Tensor,
    teacher_hidden: torch.Tensor,
    ref_hidden: torch.Tensor,
    base_hidden: torch.Tensor,
    teacher_weight: torch.Tensor,
    mask: torch.Tensor,
    *,
    alpha: float = 0.5,
    temperature: float = 1.0,
    clip: float = 10.0,
    beta: float = 1.0,
    chunk_size: int | None = None,
    matmul_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Per-token ``JSD(pi_theta || P*)`` ``[B, T]`` (zero where ``mask`` is 0), differentiable w.r.t. the student's
    hidden states and head weight; teachers' hidden states ``[B, T, H]`` share ``teacher_weight``."""
    from sdlens.losses.distill import auto_chunk_size

    shape = mask.shape
    h_dim = student_hidden.shape[-1]
    active = mask.reshape(-1).ne(0).nonzero().squeeze(1)
    out = torch.zeros(active.numel(), dtype=torch.float32, device=student_hidden.device)
    pick = [x.reshape(-1, h_dim).index_select(0, active) for x in (student_hidden, teacher_hidden, ref_hidden)]
    hs, ht, hr = pick[0], pick[1].detach(), pick[2].detach()
    h0 = base_hidden.reshape(-1, h_dim).index_select(0, active).detach()
    wt = teacher_weight.detach()
    chunk = int(chunk_size) if chunk_size else auto_chunk_size(student_weight.shape[0])
    parts = []
    with torch.autocast(device_type=student_hidden.device.type, enabled=False):
        for a in range(0, hs.shape[0], chunk):
            b = min(hs.shape[0], a + chunk)
            args = (hs[a:b], student_weight, ht[a:b], hr[a:b], h0[a:b], wt, alpha, temperature, clip, beta)
            parts.append(checkpoint(_chunk_loss, *args, matmul_dtype, use_reentrant=False))
    if parts:
        out = torch.cat(parts)
    full = torch.zeros(shape.numel(), dtype=torch.float32, device=student_hidden.device)
    if active.numel() == 0:  # nothing to distil: zeros attached to the graph
        return full.reshape(shape) + (student_hidden.sum() + student_weight.sum()).float() * 0.0
    return full.index_copy(0, active, out).reshape(shape)
