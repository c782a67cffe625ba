"""The ``transformers`` backend: batched sampling with a KV cache on CPU or GPU.

A small decode loop of its own rather than ``model.generate``, for two reasons:

- every row samples from its **own** ``torch.Generator`` seeded with the sample's seed, so a sample does not depend
  on which other samples share its batch or on what ran before it (``generate`` draws all rows from one global RNG);
- a row that reaches EOS leaves the batch (its KV-cache rows are dropped), so the batch does not keep computing
  finished sequences until the longest one ends.

Prompts are the tokenizer's chat template with the generation prompt, left-padded; positions come from the attention
mask. Sampling: temperature, then top-k, then top-p (the order of transformers' warpers); ``temperature == 0`` is
greedy. Log-probs are of the raw model distribution.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sdlens.errors import InputError
from sdlens.generation.base import ChatTemplatePrompts, GenRequest, GenResult, SamplingConfig
from sdlens.models import ModelRef, load_causal_lm, load_tokenizer, resolve_model

_DTYPES = {
    "fp32": "float32",
    "float32": "float32",
    "bf16": "bfloat16",
    "bfloat16": "bfloat16",
    "fp16": "float16",
    "float16": "float16",
}


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(
            None,
            f"device {device!r} asked for, but no GPU is visible (torch.cuda.is_available() is "
            "False); use --device cpu",
            field="device",
        )
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise InputError(None, f"unknown device {device!r}; use auto, cpu or cuda[:N]", field="device")
    return device


def resolve_dtype(dtype: str, device: str):
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    try:
        return getattr(torch, _DTYPES[dtype])
    except KeyError:
        raise InputError(None, f"unknown dtype {dtype!r}; use auto, fp32, bf16 or fp16", field="dtype") from None


class TransformersBackend(ChatTemplatePrompts):
    name = "transformers"

    def __init__(
        self,
        model: ModelRef | str,
        *,
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int = 32,
        threads: int | None = None,
    ):
        import torch
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        self.ref = model if isinstance(model, ModelRef) else resolve_model(model)
        self.model_name = self.ref.name
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        if batch_size < 1:
            raise InputError(None, f"batch size must be >= 1, got {batch_size}", field="batch_size")
        self.batch_size = batch_size
        self.tokenizer = load_tokenizer(self.ref)
        self.model = load_causal_lm(self.ref, dtype=self.dtype, device=self.device)
        # CPU threads while generating (restored after each call, torch's setting is process-wide). A tiny model's
        # matmuls are too small to split: more threads only add synchronisation, badly so on a busy machine.
        n_params = sum(p.numel() for p in self.model.parameters())
        self.threads = threads or (1 if n_params < 20_000_000 else torch.get_num_threads())
        eos: set[int] = set()
        for src in (self.tokenizer.eos_token_id, getattr(self.model.generation_config, "eos_token_id", None)):
            if isinstance(src, int):
                eos.add(src)
            elif isinstance(src, list | tuple):
                eos.update(int(x) for x in src)
        self.eos_ids = eos
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else min(eos or {0})
        self.max_positions = int(getattr(self.model.config, "max_position_embeddings", 0) or 1 << 30)
        # transformers >= 5.24 names the KV cache argument ``cache`` (``past_key_values`` before, deprecated after)
        import inspect

        params = inspect.signature(self.model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"

    # ------------------------------------------------------------ generation

    def generate(
        self, requests: Sequence[GenRequest], sampling: SamplingConfig, *, logprobs: bool = False
    ) -> list[GenResult]:
        prompts = [self.render(r.messages, sampling) for r in requests]
        out: list[GenResult] = []
        for start in range(0, len(requests), self.batch_size):
            sub = slice(start, start + self.batch_size)
            out.extend(self.generate_ids(prompts[sub], [r.seed for r in requests[sub]], sampling, logprobs=logprobs))
        return out

    def generate_ids(
        self, prompts: Sequence[list[int]], seeds: Sequence[int], sampling: SamplingConfig, *, logprobs: bool = False
    ) -> list[GenResult]:
        """One batch from token-id prompts (no chat template applied here)."""
        import torch

        before = torch.get_num_threads()
        if self.device == "cpu" and self.threads != before:
            torch.set_num_threads(self.threads)
        try:
            return self._generate_ids(prompts, seeds, sampling, logprobs)
        finally:
            if torch.get_num_threads() != before:
                torch.set_num_threads(before)

    def _generate_ids(self, prompts, seeds, sampling: SamplingConfig, logprobs: bool) -> list[GenResult]:
        import torch

        b = len(prompts)
        if b == 0:
            return []
        longest = max(len(p) for p in prompts)
        max_new = min(sampling.max_tokens, self.max_positions - longest)
        if max_new < 1:
            raise InputError(
                None,
                f"a prompt of {longest} tokens leaves no room to generate in the model's context "
                f"of {self.max_positions} positions",
                field="max_tokens",
            )
        dev = self.device
        ids = torch.full((b, longest), self.pad_id, dtype=torch.long)
        attn = torch.zeros((b, longest), dtype=torch.long)
        for i, p in enumerate(prompts):
            if p:
                ids[i, longest - len(p) :] = torch.tensor(p, dtype=torch.long)
                attn[i, longest - len(p) :] = 1
        ids, attn = ids.to(dev), attn.to(dev)
        pos = (attn.cumsum(-1) - 1).clamp(min=0)
        gens = [torch.Generator(device=dev).manual_seed(int(s)) for s in seeds]
        tokens: list[list[int]] = [[] for _ in range(b)]
        lps: list[list[float]] = [[] for _ in range(b)]
        finish: list[str] = ["length"] * b
        active = list(range(b))
        with torch.inference_mode():
            out = self.model(input_ids=ids, attention_mask=attn, position_ids=pos, use_cache=True, logits_to_keep=1)
            cache = getattr(out, "cache", None)
            if cache is None:
                cache = out.past_key_values
            next_pos = pos[:, -1] + 1
            for _ in range(max_new):
                logits = out.logits[:, -1, :].float()
                tok = self._choose(logits, sampling, [gens[r] for r in active])
                tok_list = tok.tolist()
                lp_list = torch.log_softmax(logits, dim=-1).gather(1, tok[:, None])[:, 0].tolist() if logprobs else None
                keep = []
                for j, row in enumerate(active):
                    t = tok_list[j]
                    if t in self.eos_ids:
                        finish[row] = "stop"
                        continue
                    tokens[row].append(t)
                    if lp_list is not None:
                        lps[row].append(lp_list[j])
                    if len(tokens[row]) < max_new:
                        keep.append(j)
                if not keep:
                    break
                if len(keep) < len(active):
                    idx = torch.tensor(keep, device=dev)
                    cache.batch_select_indices(idx)
                    attn, next_pos, tok = attn[idx], next_pos[idx], tok[idx]
                    active = [active[j] for j in keep]
                attn = torch.cat([attn, attn.new_ones((len(active), 1))], dim=1)
                out = self.model(
                    input_ids=tok[:, None],
                    attention_mask=attn,
                    position_ids=next_pos[:, None],
                    use_cache=True,
                    **{self._cache_kw: cache},
                )
                next_pos = next_pos + 1
        return [
            GenResult(
                text=self.tokenizer.decode(tokens[i], skip_special_tokens=True),
                n_generated=len(tokens[i]),
                finish_reason=finish[i],
                token_ids=tokens[i],
                logprobs=lps[i] if logprobs else None,
            )
            for i in range(b)
        ]

    @staticmethod
    def _choose(logits, sampling: SamplingConfig, gens: list) -> Any:
        import torch

        if sampling.greedy:
            return logits.argmax(dim=-1)
        x = logits / sampling.temperature
        if sampling.top_k is not None and sampling.top_k < x.shape[-1]:
            kth = torch.topk(x, sampling.top_k, dim=-1).values[:, -1:]
            x = x.masked_fill(x < kth, float("-inf"))
        if sampling.top_p < 1.0:
            sorted_x, order = torch.sort(x, dim=-1, descending=False)
            cum = torch.softmax(sorted_x, dim=-1).cumsum(dim=-1)
            remove = cum <= 1 - sampling.top_p
            remove[:, -1] = False  # always keep the most likely token
            x = x.scatter(1, order, sorted_x.masked_fill(remove, float("-inf")))
        probs = torch.softmax(x, dim=-1)
        picks = [torch.multinomial(probs[j], 1, generator=g) for j, g in enumerate(gens)]
        return torch.cat(picks)

    def info(self) -> dict[str, Any]:
        import torch
        import transformers

        return {
            "backend": self.name,
            "device": self.device,
            "dtype": str(self.dtype).removeprefix("torch."),
            "batch_size": self.batch_size,
            "threads": self.threads if self.device == "cpu" else None,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        }

    def close(self) -> None:
        self.model = None
