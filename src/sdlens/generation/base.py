"""The backend protocol, its request / result records, sampling settings and per-sample seeds (public through
:mod:`sdlens.generation`, whose ``__all__`` lists them)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol, runtime_checkable

from sdlens.errors import InputError


@dataclass(frozen=True)
class SamplingConfig:
    """How to sample. ``temperature == 0`` is greedy. ``top_k`` ``None`` = off (the paper parses top_k=20 but never
    passes it on). ``enable_thinking`` goes to the chat template (``None``: not passed; templates that do not know the
    flag ignore it). ``seed`` is the run seed: each sample draws from its own seed derived from it."""

    temperature: float = 0.6
    top_p: float = 0.95
    top_k: int | None = None
    max_tokens: int = 38_912
    n: int = 16
    seed: int = 0
    enable_thinking: bool | None = True
    preset: str | None = None

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise InputError(None, f"temperature must be >= 0, got {self.temperature}", field="temperature")
        if not 0 < self.top_p <= 1:
            raise InputError(None, f"top_p must be in (0, 1], got {self.top_p}", field="top_p")
        if self.top_k is not None and self.top_k < 1:
            raise InputError(None, f"top_k must be >= 1 (or unset), got {self.top_k}", field="top_k")
        if self.max_tokens < 1:
            raise InputError(None, f"max_tokens must be >= 1, got {self.max_tokens}", field="max_tokens")
        if self.n < 1:
            raise InputError(None, f"n must be >= 1, got {self.n}", field="n")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def chat_template_kwargs(self) -> dict[str, Any]:
        return {} if self.enable_thinking is None else {"enable_thinking": self.enable_thinking}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def with_overrides(self, **changes: Any) -> SamplingConfig:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


PRESETS: dict[str, SamplingConfig] = {
    # The paper's evaluation (docs/paper.md section 8.2): thinking models, and Qwen3 with thinking off.
    "paper-think": SamplingConfig(0.6, 0.95, None, 38_912, 16, 0, True, "paper-think"),
    "paper-nothink": SamplingConfig(0.7, 0.8, None, 38_912, 16, 0, False, "paper-nothink"),
    "greedy": SamplingConfig(0.0, 1.0, None, 38_912, 1, 0, None, "greedy"),
}


def get_preset(name: str) -> SamplingConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise InputError(None, f"unknown preset {name!r}; known: {', '.join(PRESETS)}", field="preset") from None


def sample_seed(seed: int, problem_id: str, index: int) -> int:
    """The seed of one sample: a 31-bit hash of (run seed, problem id, sample index).

    It depends on nothing else, so a sample is the same whichever run, batch or resume produced it (up to the
    floating-point effects of batch composition, which the eval runner keeps fixed)."""
    h = hashlib.blake2b(f"{seed}\x00{problem_id}\x00{index}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") & 0x7FFF_FFFF


@dataclass
class GenRequest:
    """One sample to generate: chat ``messages`` and the sample's own ``seed``. ``key`` is the caller's label."""

    messages: list[dict[str, Any]]
    seed: int = 0
    key: Any = None


@dataclass
class GenResult:
    """What a backend returns for one request.

    ``n_generated``: tokens generated, the stop token (EOS) not counted. ``finish_reason``: ``stop`` (EOS or a stop
    string) or ``length`` (hit max_tokens). ``logprobs``: the model's log-probability of each generated token (raw
    distribution, before temperature / top-p), when the backend gives them."""

    text: str
    n_generated: int | None = None
    finish_reason: str | None = None
    token_ids: list[int] | None = None
    logprobs: list[float] | None = None
    info: dict[str, Any] = field(default_factory=dict)


class ChatTemplatePrompts:
    """For a backend that generates from token ids: ``render`` turns chat messages into the prompt's ids with the
    backend's Hugging Face ``tokenizer`` and its chat template (the special tokens come from the template only)."""

    tokenizer: Any

    def render(self, messages: list[dict[str, Any]], sampling: SamplingConfig) -> list[int]:
        text = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=False, **sampling.chat_template_kwargs()
        )
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])


@runtime_checkable
class Backend(Protocol):
    """Generates samples. ``generate`` returns one result per request, in order. ``tokenizer`` (a Hugging Face
    tokenizer, or ``None`` for a remote model) is used to count response and thinking tokens."""

    name: str
    model_name: str
    tokenizer: Any

    def generate(
        self, requests: Sequence[GenRequest], sampling: SamplingConfig, *, logprobs: bool = False
    ) -> list[GenResult]: ...

    def info(self) -> dict[str, Any]: ...

    def close(self) -> None: ...
