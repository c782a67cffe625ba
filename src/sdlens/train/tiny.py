"""Tiny random models for training smoke runs: ``sdlens models tiny``.

A random model almost never samples its end-of-sequence token (1 in 261 at best, far less once its peaky random
weights fall into a loop), so on-policy training with the paper's 20,480-token completion budget would generate
until the budget on every rollout. :func:`build_tiny_model` therefore (optionally) gives the model a calibrated
stop rate: completions end after ``mean_length`` tokens on average (geometric lengths), so any preset runs in
seconds on a CPU.

How: hidden dimension 0 becomes a constant channel: every input embedding holds the same value there and no
attention or MLP output writes to it, so the last hidden state always carries it. The output layer is untied from
the embeddings and no token reads the channel except the end-of-sequence token, whose row is ``s`` on it and zero
elsewhere, ``s`` found by bisection so that the mean probability of ending over sampled contexts is
``1 / mean_length``. Rows of a padded vocabulary (ids the tokenizer never produces) read it with a large negative
weight, so they are practically never sampled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sdlens.models import load_tokenizer, make_tiny_model
from sdlens.runfolder import write_json

__all__ = ["build_tiny_model", "calibrate_stop_rate"]


def build_tiny_model(
    out: str | Path,
    *,
    arch: str = "llama",
    vocab_size: int | None = None,
    chat_template: str = "chatml",
    mean_length: float | None = 48.0,
    hidden_size: int = 128,
    layers: int = 2,
    seed: int = 0,
) -> dict[str, Any]:
    """Write a tiny random causal LM with its tokenizer and chat template to ``out``; returns a description.

    ``mean_length``: calibrate the stop rate so sampled completions (temperature 1) end after this many tokens on
    average; ``None`` leaves the random model as :func:`sdlens.models.make_tiny_model` builds it.
    """

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    make_tiny_model(
        out,
        seed=seed,
        hidden_size=hidden_size,
        layers=layers,
        arch=arch,
        vocab_size=vocab_size,
        chat_template=chat_template,
    )
    info: dict[str, Any] = {
        "path": str(out),
        "arch": arch,
        "vocab_size": vocab_size,
        "chat_template": chat_template,
        "hidden_size": hidden_size,
        "layers": layers,
        "seed": seed,
        "mean_length": mean_length,
    }
    if mean_length is not None:
        info["calibration"] = calibrate_stop_rate(out, mean_length, seed=seed)
    write_json(out / "sdlens_tiny.json", info)
    return info


def _mean_stop_prob(model, contexts, eos_id: int, head, channel: int, scale: float) -> float:
    import torch

    with torch.no_grad():
        head.weight[eos_id].zero_()
        head.weight[eos_id, channel] = scale
        logits = model(input_ids=contexts, use_cache=False).logits
        return float(torch.softmax(logits.float(), dim=-1)[..., eos_id].mean())


def calibrate_stop_rate(path: str | Path, mean_length: float, *, seed: int = 0, pad_scale: float = 30.0) -> dict:
    """Give the model at ``path`` a stop probability of about ``1 / mean_length`` per token (see the module doc)."""
    import torch
    from torch import nn
    from transformers import AutoModelForCausalLM

    if mean_length <= 1:
        raise ValueError(f"mean_length must be > 1, got {mean_length}")
    path = Path(path)
    tok = load_tokenizer(str(path))
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    emb = model.get_input_embeddings()
    head = model.get_output_embeddings()
    channel = 0  # the hidden dimension that carries the constant
    writers = [m for name, m in model.named_modules() if name.endswith(("o_proj", "down_proj"))]
    if not writers or not all(isinstance(m, nn.Linear) for m in writers):
        raise ValueError(f"cannot calibrate {type(model).__name__}: no o_proj / down_proj linear layers")
    with torch.no_grad():
        row_norm = float(emb.weight.norm(dim=1).mean())
        for m in writers:  # attention and MLP never write to the constant channel
            m.weight[channel].zero_()
            if m.bias is not None:
                m.bias[channel] = 0.0
        new_head = nn.Linear(emb.weight.shape[1], emb.weight.shape[0], bias=False)
        new_head.weight.copy_(head.weight)
        new_head.weight[:, channel] = 0.0
        emb.weight[:, channel] = 2.0 * row_norm
        n_tok = len(tok)
        if emb.weight.shape[0] > n_tok:  # padded vocabulary: never sampled
            new_head.weight[n_tok:] = 0.0
            new_head.weight[n_tok:, channel] = -pad_scale
    model.set_output_embeddings(new_head)
    model.config.tie_word_embeddings = False
    if hasattr(model.config, "get_text_config"):
        model.config.get_text_config().tie_word_embeddings = False

    # Contexts: a chat prompt and then random text tokens; a second round uses the model's own samples (with the
    # end token banned), which is what it sees while generating.
    gen = torch.Generator().manual_seed(seed + 1)
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "What is 1 + 1?"}], add_generation_prompt=True, tokenize=True, return_dict=True
    )["input_ids"]
    prompts = torch.tensor(prompt).repeat(8, 1)
    contexts = torch.cat([prompts, torch.randint(0, 256, (8, 64), generator=gen)], dim=1)
    target = 1.0 / mean_length
    eos_id = tok.eos_token_id

    def bisect(contexts) -> float:
        lo, hi = -10.0, 10.0
        while _mean_stop_prob(model, contexts, eos_id, new_head, channel, hi) < target and hi < 1e4:
            hi *= 2
        for _ in range(20):
            mid = (lo + hi) / 2
            if _mean_stop_prob(model, contexts, eos_id, new_head, channel, mid) < target:
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2

    scale = bisect(contexts)
    with torch.no_grad():
        head_eos = new_head.weight[eos_id].clone()
        torch.manual_seed(seed + 2)
        sampled = model.generate(
            prompts,
            attention_mask=torch.ones_like(prompts),
            do_sample=True,
            max_new_tokens=64,
            min_new_tokens=64,
            pad_token_id=tok.pad_token_id,
            eos_token_id=eos_id,
        )
        new_head.weight[eos_id] = head_eos
    scale = bisect(sampled)
    achieved = _mean_stop_prob(model, sampled, eos_id, new_head, channel, scale)
    model.save_pretrained(path)
    return {"target_stop_prob": round(target, 6), "stop_prob": round(achieved, 6), "eos_scale": round(scale, 4)}
