"""The settings of `sdlens analyze` / `compare` / `probe`, in one light module: the CLI builds each option's help from
these fields' ``help`` (``sdlens --help`` reads them, so nothing heavy is imported here)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdlens.epistemic.segment import Scope
from sdlens.errors import InputError
from sdlens.fields import documented
from sdlens.io.keys import KeyMap

__all__ = ["MEASURES", "AnalyzeConfig", "JudgeConfig", "MeasureOptions", "ProbeConfig", "parse_measures"]

MEASURES = ("reflection", "revisions", "forks", "judged")
"""The behaviour measures ``sdlens.epistemic.measures`` builds, by name."""


@dataclass(frozen=True)
class JudgeConfig:
    """Who judges and where judgements are kept."""

    model: str = documented(
        help="Judge model: a name sdlens knows (smollm2-135m), a local folder, a hub id, or the served model's name."
    )
    backend: str = documented("transformers", "transformers, vllm or openai (an OpenAI-compatible server, base_url).")
    base_url: str | None = documented(None, "Server URL for the openai backend.")
    cache: Path = documented(
        Path(".sdlens-judge-cache.jsonl"), "JSONL cache of judgements (per response hash, judge and prompt version)."
    )
    prompt: str = documented("behaviours-v1", "A shipped prompt version, or a path to a TOML prompt of the same shape.")
    max_tokens: int = documented(32, "Tokens the judge may write per call (a count needs a handful).")
    device: str = documented("auto", "transformers device of the judge: auto, cpu, cuda.")


@dataclass(frozen=True)
class MeasureOptions:
    """Settings of the behaviour measures (part of ``AnalyzeConfig``)."""

    reflection_lexicon: str = documented(
        "reflection",
        "Reflection keywords: reflection (oat-zero's unified set), reflection-qwen / -deepseek / -llama (its "
        "per-family sets), family (chosen per sample by its model name), or a TOML file.",
    )
    fork_entropy: float = documented(1.0, "Entropy (nats) at or above which a position counts as a fork.")
    judged: Any = documented(
        None,
        "The judged measure, built by the caller (sdlens.behaviour.judge.Judged: it runs a model, which the "
        "counting layer does not load).",
    )


@dataclass
class AnalyzeConfig:
    """Options of `sdlens analyze` (and `sdlens compare`)."""

    fmt: str | None = documented(
        None,
        "Input format (default: auto-detect). One of: sdlens, paper-eval, paper-hint, verl-dump, verl-generation, "
        "trl-completions, openai-batch, lighteval, trace-dataset, generic.",
    )
    lexicon: str = documented(
        "paper", "paper (the paper's exact counter), words, companion, or a path to a TOML lexicon."
    )
    scope: Scope = documented(Scope.full, "Which part of each response is counted: full, thinking or answer.")
    by: str | None = documented(
        None, "Group results by a field: step, correct, model, source, context, file, or any input field (in meta)."
    )
    tokenizer: str | None = documented(
        None, "Tokenizer (hub id or local folder) for per-1k-token rates; whitespace words when None."
    )
    keys: KeyMap = documented(default_factory=KeyMap, help="Field names for formats that need telling (KeyMap).")
    skip_bad: bool = documented(False, "Skip and count malformed records instead of stopping at the first.")
    batch_size: int = documented(4096, "Responses counted per batch (bounds memory).")
    fast: bool = documented(
        True, "Use the compiled raw-JSONL scanner for the paper's eval format when nothing needs full records."
    )
    threads: int = documented(2, "Threads for the compiled scanner.")
    chunk_bytes: int = documented(
        256 << 20, "Bytes of a paper-format file the compiled scanner takes at once (whole lines; bounds memory)."
    )
    measures: tuple[str, ...] = documented(
        (),
        "Behaviour measures beside the hedge counts, comma-separated: reflection, revisions, forks, judged "
        "(sdlens.epistemic.measures).",
    )
    measure_options: MeasureOptions = documented(
        default_factory=MeasureOptions, help="Settings of those measures (reflection keywords, fork entropy, judge)."
    )


@dataclass
class ProbeConfig:
    """Options of `sdlens probe`."""

    model: str = documented(
        help="Scoring model: smollm2-135m, tiny-random, a local folder or a hub id (see sdlens.models)."
    )
    data: Path = documented(help="Trace file or folder, any format sdlens analyze reads.")
    context: str = documented(
        "hint",
        "Privileged context: hint (a correct solution), hint-nothink (its thinking removed), answer (the ground "
        "truth only) or none.",
    )
    problems: str | None = documented(
        None,
        "Where each problem id's prompt comes from when the traces lack it: a file of sdlens Problems or a verl "
        "dataset, or a benchmark name / file as sdlens eval --benchmark takes it (e.g. for eval samples).",
    )
    lexicon: str = documented("words", "Hedge lexicon (words by default: whole words, as the live monitor).")
    fmt: str | None = documented(None, "Input format; auto-detected when None.")
    keys: KeyMap = documented(default_factory=KeyMap, help="Field names for formats that need telling (KeyMap).")
    limit: int | None = documented(None, "Score at most this many responses (in file order).")
    max_tokens: int = documented(1024, "Score at most this many tokens of each response (from its start).")
    device: str = documented("cpu", "Torch device.")
    n_boot: int = documented(1000, "Bootstrap resamples (over problems) for the CI of hedge minus other.")
    seed: int = documented(0, "Bootstrap seed.")
    save_tokens: Path | None = documented(
        None,
        "Write the scored samples with per-token token_logprob, token_entropy, token_is_top and token_pmi in meta "
        "(JSONL) here.",
    )


def parse_measures(spec: str | Sequence[str] | None) -> tuple[str, ...]:
    """``AnalyzeConfig.measures`` from a comma-separated string or a list of names (checked, duplicates dropped)."""
    if not spec:
        return ()
    names = [n.strip() for n in (spec.split(",") if isinstance(spec, str) else spec) if n.strip()]
    for n in names:
        if n not in MEASURES:
            raise InputError(None, f"unknown measure {n!r} (choose from {', '.join(MEASURES)})", field="measures")
    return tuple(dict.fromkeys(names))
