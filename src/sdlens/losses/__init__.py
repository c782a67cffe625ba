"""Training losses. ``distill``: the memory-lean SDPO self-distillation loss (issue 6, docs/distill_loss.md).

``sdpo_trainer`` (imported on demand, it needs trl): ``ChunkedSDPOTrainer``, TRL's SDPO trainer computing that loss
from hidden states instead of full logits.
"""

from sdlens.losses.distill import (
    DistillOutput,
    add_tail_bucket,
    auto_chunk_size,
    generalized_jsd,
    is_clip_weights,
    naive_self_distillation_loss,
    reduce_per_token,
    self_distillation_loss,
    self_distillation_per_token,
    support_log_probs,
    token_logprobs,
)

__all__ = [
    "DistillOutput",
    "add_tail_bucket",
    "auto_chunk_size",
    "generalized_jsd",
    "is_clip_weights",
    "naive_self_distillation_loss",
    "reduce_per_token",
    "self_distillation_loss",
    "self_distillation_per_token",
    "support_log_probs",
    "token_logprobs",
]
