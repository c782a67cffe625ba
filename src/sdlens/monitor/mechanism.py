"""The mechanism signal: does the solution-conditioned teacher push hedge tokens down?

At every position of a distillation pass (inside the loss mask) the gap is ``teacher_logp - student_logp`` of the
sampled token. The paper's claim predicts a more negative gap at positions holding a hedge word than elsewhere: the
teacher, which knows the answer, finds "wait" less likely than the student who wrote it. Reported per logging step:

- ``gap_hedge`` / ``gap_other``: mean gap at hedge positions / at all other positions;
- ``gap_difference``: ``gap_hedge - gap_other`` (negative: hedges are pushed down more than other tokens);
- ``hedge_loss_share``: the share of the distillation loss carried by hedge positions, beside ``hedge_token_share``,
  the share of positions that hold hedges (a loss share above the token share: hedges are over-weighted);
- ``n_hedge_positions``, ``n_positions``.

Hedge positions come from :func:`sdlens.epistemic.tokens.hedge_position_mask` (every piece of a split word).
Sums are kept so that several passes (and ranks) combine exactly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sdlens.epistemic.lexicon import Lexicon
from sdlens.epistemic.tokens import hedge_position_mask

__all__ = ["GapAccumulator", "gap_sums"]

# order of the sums vector
_FIELDS = ("gap_hedge_sum", "n_hedge", "gap_other_sum", "n_other", "loss_hedge", "loss_total")


def gap_sums(event: Any, tokenizer: Any, lexicon: str | Path | Lexicon = "words", hedge_mask: Any = None):
    """The six sums of one distillation pass as a float64 tensor (see ``_FIELDS``).

    ``event``: anything with ``completion_ids``, ``loss_mask``, ``student_logps``, ``teacher_logps``,
    ``per_token_loss`` (``[B, T]``), e.g. :class:`sdlens.train.sdpo_trainer.DistillationPass`. ``hedge_mask``:
    precomputed hedge positions (default: from the tokenizer).
    """
    import torch

    ids = event.completion_ids.detach().cpu()
    if hedge_mask is None:
        hedge_mask = hedge_position_mask(ids, tokenizer, lexicon)
    valid = event.loss_mask.detach().cpu() > 0
    hedge = hedge_mask.cpu().bool() & valid
    other = valid & ~hedge
    gap = (event.teacher_logps.detach().float() - event.student_logps.detach().float()).cpu().double()
    loss = event.per_token_loss.detach().float().cpu().double()
    return torch.tensor(
        [
            float(gap[hedge].sum()),
            float(hedge.sum()),
            float(gap[other].sum()),
            float(other.sum()),
            float(loss[hedge].sum()),
            float(loss[valid].sum()),
        ],
        dtype=torch.float64,
    )


class GapAccumulator:
    """Sums over the passes since the last :meth:`reset`; :meth:`result` turns them into the reported means."""

    def __init__(self, tokenizer: Any, lexicon: str | Path | Lexicon = "words"):
        import torch

        self.tokenizer = tokenizer
        self.lexicon = lexicon
        self.sums = torch.zeros(len(_FIELDS), dtype=torch.float64)
        self.passes = 0

    def __call__(self, event: Any) -> None:
        """A distillation listener: add one pass."""
        self.sums += gap_sums(event, self.tokenizer, self.lexicon)
        self.passes += 1

    def reset(self) -> None:
        self.sums.zero_()
        self.passes = 0

    @staticmethod
    def result(sums) -> dict[str, float | None]:
        gh, nh, go, no, lh, lt = (float(x) for x in sums)
        n = nh + no
        return {
            "gap_hedge": gh / nh if nh else None,
            "gap_other": go / no if no else None,
            "gap_difference": gh / nh - go / no if nh and no else None,
            "hedge_loss_share": lh / lt if lt else None,
            "hedge_token_share": nh / n if n else None,
            "n_hedge_positions": int(nh),
            "n_positions": int(n),
        }
