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
three full next-token distributions: the loss is the chunked full-vocabulary distillation loss
(:func:`sdlens.losses.self_distillation_per_token`) with the three passes as its teacher hidden states and
:func:`purified_target_logprobs` as its ``teacher_target``, so per chunk of tokens the four logit blocks exist only
while that chunk is computed (the backward recomputes them) and no ``[B, T, V]`` tensor is ever held.
"""

from __future__ import annotations

import torch

__all__ = ["purified_target_logprobs", "without_question"]


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
