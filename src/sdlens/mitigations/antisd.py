r"""AntiSD-style sign flip (issue 10, part 4), after arXiv 2605.11609 as summarised in docs/paper.md 12.2.

The self-distillation signal at a sampled token is the pointwise mutual information between the token and the
teacher's privileged context,

    u_t = log p_teacher(y_t | x, c, y_<t) - log p_student(y_t | x, y_<t),

negative on deliberation tokens ("wait", "maybe") that a solution-conditioned teacher finds unnecessary. AntiSD
ascends the divergence instead of descending it, as a bounded per-token advantage added to GRPO's:

    phi(u) = (softplus(u) - log 2) / 2          (>= -log(2)/2 for u -> -inf, ~ u/2 for large u, phi(0) = 0)
    A_t    = A_seq - lambda * stopgrad(phi(u_t))  at tokens with a teacher (A_seq elsewhere)

so tokens the teacher finds *less* likely than the student does (u < 0) get a bonus of at most log(2)/2 * lambda
and tokens it finds more likely (shortcuts) a penalty growing with u. The policy loss is TRL's clipped
surrogate with these per-token advantages; there is no distillation loss.

The entropy gate: the teacher's mean next-token entropy over the distilled tokens of each micro-batch (all processes
together) is averaged over the first ``warmup_steps`` optimizer steps into ``H_warm`` (the term is on meanwhile);
afterwards the term switches off when the entropy falls below ``ratio * H_warm`` (0.93) and on again once it is
back at ``H_warm`` or above (hysteresis).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = [
    "EntropyGate",
    "antisd_advantages",
    "antisd_phi",
]

LOG2 = math.log(2.0)


def antisd_phi(u: torch.Tensor) -> torch.Tensor:
    """The bounded advantage ``phi(u) = (softplus(u) - log 2) / 2`` (before AntiSD's sign flip)."""
    return 0.5 * (F.softplus(u) - LOG2)


def antisd_advantages(
    seq_advantages: torch.Tensor, u: torch.Tensor, mask: torch.Tensor, lam: float, active: bool = True
) -> torch.Tensor:
    """Per-token advantages ``[B, T]``: ``A_seq - lam * phi(u)`` where ``mask`` (tokens with a teacher) and the
    gate is ``active``, ``A_seq`` elsewhere. ``u`` is detached (stop-gradient)."""
    seq = seq_advantages.reshape(-1, 1).to(torch.float32)
    base = seq.expand(u.shape[0], u.shape[1]).clone()
    if not active or lam == 0.0:
        return base
    return base - lam * antisd_phi(u.detach().float()) * mask.to(torch.float32)


@dataclass
class EntropyGate:
    """The AntiSD entropy gate (see the module doc). ``update`` returns whether the term is on for this micro-batch.

    ``enabled=False``: always on. Its fields are the run state saved with checkpoints
    (:mod:`sdlens.mitigations.state`).
    """

    warmup_steps: int = 10
    ratio: float = 0.93
    enabled: bool = True
    h_warm: float | None = None
    is_open: bool = True
    _sum: float = 0.0
    _count: int = 0

    def update(self, step: int, entropy: float | None) -> bool:
        if not self.enabled:
            return True
        if entropy is None or not math.isfinite(entropy):
            return self.is_open  # no token with a teacher here: nothing to measure
        if step < self.warmup_steps:
            self._sum += entropy
            self._count += 1
            return True
        if self.h_warm is None:
            self.h_warm = self._sum / self._count if self._count else entropy
        if self.is_open and entropy < self.ratio * self.h_warm:
            self.is_open = False
        elif not self.is_open and entropy >= self.h_warm:
            self.is_open = True
        return self.is_open
