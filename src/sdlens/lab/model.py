"""The organism's base model: a small Llama-style ``transformers`` model, randomly initialised, ready to pretrain."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sdlens.fields import documented as h

__all__ = ["ModelConfig", "init_model"]


@dataclass(frozen=True)
class ModelConfig:
    """Size of the organism (about 0.4 M parameters at the defaults)."""

    hidden_size: int = h(128, "Width.")
    layers: int = h(2, "Decoder blocks.")
    heads: int = h(4, "Attention heads (as many key/value heads).")
    intermediate_size: int = h(384, "MLP width.")
    max_positions: int = h(1024, "Longest prompt + response (teacher prompts carry a whole sibling trace).")


def init_model(cfg: ModelConfig, tokenizer: Any, seed: int):
    """A ``LlamaForCausalLM`` sized by ``cfg`` with ``tokenizer``'s vocabulary and special ids, initialised from
    ``seed``."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    special_ids = {name: getattr(tokenizer, name) for name in ("bos_token_id", "eos_token_id", "pad_token_id")}
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.layers,
        num_attention_heads=cfg.heads,
        num_key_value_heads=cfg.heads,
        max_position_embeddings=cfg.max_positions,
        tie_word_embeddings=True,
        **special_ids,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(**special_ids)
    return model
