"""``EvalConfig``: everything ``sdlens eval`` takes, in a light module (``sdlens eval --help`` reads each option's
help from these fields; :mod:`sdlens.evaluate` runs it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sdlens.errors import InputError
from sdlens.fields import documented as h
from sdlens.generation.base import SamplingConfig, get_preset

__all__ = ["THINKING_CHOICES", "EvalConfig"]

THINKING_CHOICES = {"on": True, "off": False, "unset": None}

# The fields that configure the generation backend: make_backend's keyword arguments of the same names.
_BACKEND_FIELDS = (
    "base_url", "device", "dtype", "seed", "api_key", "concurrency", "timeout", "max_retries", "group_n",
    "tensor_parallel_size", "threads",
)  # fmt: skip


@dataclass
class EvalConfig:
    """One eval run: a model on a benchmark, sampled with a preset (plus overrides), graded and measured."""

    model: str = h("smollm2-135m", "smollm2-135m (embedded), tiny-random, a local model folder, or a hub id.")
    benchmark: str = h(
        "math500",
        "aime24, aime25, amc23, math500 (shipped: `sdlens benchmarks list`), or a verl parquet / JSONL file.",
    )
    backend: str = h("transformers", "transformers, vllm or openai.")
    base_url: str | None = h(None, "OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1 (backend openai).")
    preset: str = h(
        "paper-think",
        "paper-think (T 0.6, top-p 0.95, n 16, 38,912 tokens, thinking on), paper-nothink (T 0.7, top-p 0.8), greedy.",
    )
    n: int | None = h(None, "Samples per problem (default: the preset's).")
    max_tokens: int | None = h(None, "Max new tokens (default: the preset's).")
    temperature: float | None = h(None, "Sampling temperature (default: the preset's).")
    top_p: float | None = h(None, "Nucleus sampling top-p (default: the preset's).")
    top_k: int | None = h(None, "top-k sampling (default: off, as in the paper).")
    thinking: str | None = h(
        None, "enable_thinking for the chat template: on, off, or unset (not passed); default: the preset's."
    )
    seed: int = h(0, "Run seed; each sample's seed derives from it.")
    limit: int | None = h(None, "First L problems only.")
    few_shot: int = h(
        0, "Worked examples put in the chat before each problem (0-4; small models need 1 to write \\boxed{})."
    )
    data_dir: str | None = h(
        None, "Folder with {name}.parquet (default: $SDLENS_DATA_DIR, then the cache; see docs/eval.md)."
    )
    out: str | None = h(None, "Output folder (default: runs/eval/MODEL-BENCHMARK-PRESET).")
    batch_size: int | None = h(
        None, "Samples per chunk, and per forward pass for transformers (default: 32; vllm 256; openai 4x concurrency)."
    )
    device: str = h("auto", "auto, cpu, cuda (transformers).")
    dtype: str = h("auto", "auto (fp32 on CPU, bf16 on GPU), fp32, bf16, fp16.")
    threads: int | None = h(None, "CPU threads for transformers (default: all cores; 1 is faster on a busy machine).")
    grader: str = h("math-verify", "sdlens grader for every sample: math-verify, paper-reward, or a registered one.")
    concurrency: int = h(8, "Requests in flight (openai).")
    timeout: float = h(600.0, "Seconds per request (openai).")
    max_retries: int = h(5, "Retries per request (openai).")
    group_n: bool = h(False, "One request with n per problem instead of one per sample (openai).")
    api_key: str | None = h(None, "API key of the OpenAI-compatible server (openai; default: $OPENAI_API_KEY).")
    tensor_parallel_size: int = h(1, "GPUs per model (vllm).")
    save_logprobs: bool = h(False, "Store per-token log-probs in each sample's meta.")
    overwrite: bool = h(False, "Replace a run with other settings in --out.")
    dry_run: bool = h(
        False, "Print the plan (data, sampling, what is left to do) as JSON; load no model, write nothing."
    )

    def sampling(self) -> SamplingConfig:
        base = get_preset(self.preset)
        changes = {
            "n": self.n,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "seed": self.seed,
        }
        s = base.with_overrides(**changes)
        if self.thinking is not None:
            if self.thinking not in THINKING_CHOICES:
                raise InputError(None, f"thinking must be on, off or unset, got {self.thinking!r}", field="thinking")
            s = SamplingConfig(**{**asdict(s), "enable_thinking": THINKING_CHOICES[self.thinking]})
        return s

    def backend_options(self) -> dict[str, Any]:
        """:func:`sdlens.generation.make_backend`'s keyword arguments for this run (the transformers backend's forward
        batch is a chunk's rows)."""
        batch_size = self.rows_per_chunk() if self.backend == "transformers" else 32
        return {"batch_size": batch_size, **{name: getattr(self, name) for name in _BACKEND_FIELDS}}

    def rows_per_chunk(self) -> int:
        if self.batch_size is not None:
            if self.batch_size < 1:
                raise InputError(None, f"batch size must be >= 1, got {self.batch_size}", field="batch_size")
            return self.batch_size
        return {"transformers": 32, "vllm": 256}.get(self.backend, 4 * self.concurrency)
