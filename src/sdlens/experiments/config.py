"""The experiments' configs, in one light module: the CLI builds each option's help from these fields' ``help``.

Every experiment config is an :class:`EvalSettings` (the model, the run folder, sampling, backend, seed, grader,
lexicon: what every generation-and-evaluation stage takes) plus its own fields. Nothing heavy is imported here
(``sdlens --help`` reads these classes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sdlens.errors import InputError
from sdlens.fields import documented as h
from sdlens.prompts import PAPER_SYSTEM
from sdlens.train.presets import PRESETS

__all__ = [
    "CONTEXTS",
    "HINTED_CONTEXTS",
    "PAPER_SYSTEM",
    "CoverageConfig",
    "EvalSettings",
    "GuidedSFTConfig",
    "RicherContextConfig",
    "SamplingFields",
]

# The section-3 conditioning contexts (:mod:`sdlens.experiments.contexts` builds their prompts).
CONTEXTS: tuple[str, ...] = ("none", "s", "s-nothink", "regen")
HINTED_CONTEXTS: tuple[str, ...] = ("s", "s-nothink", "regen")


@dataclass
class SamplingFields:
    """Sampling: a preset of :mod:`sdlens.generation` plus overrides (``None`` keeps the preset's value)."""

    preset: str = h("paper-think", "Sampling preset: paper-think (T 0.6, top_p 0.95), paper-nothink, greedy.")
    temperature: float | None = h(None, "Overrides the preset's temperature.")
    top_p: float | None = h(None, "Overrides the preset's top_p.")
    top_k: int | None = h(None, "top_k (the presets leave it off, as the paper's eval does).")
    max_new_tokens: int | None = h(None, "Generation budget per sample (the presets: 38,912).")
    thinking: str | None = h(None, "on / off / unset: enable_thinking for the chat template; None: the preset's.")


@dataclass
class EvalSettings(SamplingFields):
    """What every generation-and-evaluation stage of an experiment takes (the three experiments share it)."""

    model: str = h("", "The model: smollm2-135m, tiny-random, a local model folder, or a hub id.")
    out: str = h("", "Run folder (a rerun resumes it).")
    backend: str = h("transformers", "Generation backend: transformers, vllm or openai.")
    eval_options: dict[str, Any] | None = h(None, "Extra sdlens.evaluate.EvalConfig fields: base_url, device, dtype...")
    seed: int = h(0, "Run seed: each sample's seed derives from it, the problem id and its index; so does training's.")
    grader: str = h("math-verify", "sdlens grader for every sample: math-verify, paper-reward, or a registered one.")
    batch_size: int | None = h(None, "Rows per generation chunk (default per backend).")
    lexicon: str = h("paper", "Hedge lexicon for E: paper (the paper's counter), words, companion, or a TOML file.")


@dataclass
class RicherContextConfig(EvalSettings):
    """One section-3 run. Sampling defaults are the paper's (T 0.6, top_p 0.95, top_k 20, 32,768 tokens)."""

    data: str = h("", "Problems: a benchmark name, a verl parquet, a Problem JSONL, or a JSONL with question/answer.")
    n: int = h(8, "Samples per problem in every round (paper: 8).")
    window: tuple[int, int] = h((1, 4), "Keep problems with LOW-HIGH correct unguided samples, inclusive (paper 1-4).")
    max_problems: int = h(100, "Stop once this many problems are kept (paper: max_collect 100).")
    scan_batch: int = h(128, "Problems sampled per scanning step, in file order (paper: 128).")
    contexts: tuple[str, ...] = h(CONTEXTS, "Contexts to run: none, s, s-nothink, regen (regen also runs s).")
    top_k: int | None = h(20, "top_k (paper section 3: 20).")
    max_new_tokens: int | None = h(32768, "Generation budget per sample (paper section 3: 32,768).")

    def check(self) -> None:
        for name in ("model", "data", "out"):
            if not getattr(self, name):
                raise InputError(None, f"missing {name}", field=name)
        lo, hi = self.window
        if not 0 <= lo <= hi <= self.n:
            raise InputError(None, f"window must satisfy 0 <= low <= high <= n={self.n}, got {lo}-{hi}", field="window")
        if lo < 1 and any(c != "none" for c in self.contexts):
            raise InputError(None, "a hinted context needs a correct solution: window low must be >= 1", field="window")
        bad = [c for c in self.contexts if c not in CONTEXTS]
        if bad:
            raise InputError(None, f"unknown context {bad[0]!r}; choose from {', '.join(CONTEXTS)}", field="contexts")
        for name in ("n", "max_problems", "scan_batch"):
            if getattr(self, name) < 1:
                raise InputError(None, f"{name} must be >= 1", field=name)


@dataclass
class GuidedSFTConfig(EvalSettings):
    """One section-4 run: build the two SFT sets, train both, evaluate the three models."""

    data: str = h("", "Problems for the section-3 traces (ignored with from_richer_context).")
    benchmarks: list[str] = h(
        default_factory=lambda: ["aime24"], help="Evaluation sets (names or files): the OOD eval; default aime24."
    )
    n_eval: int = h(16, "Samples per problem in the evaluation (paper: avg@16).")
    limit: int | None = h(None, "Evaluate only the first N problems of each benchmark.")
    max_examples: int = h(800, "At most this many examples per SFT set (paper: 800).")
    from_richer_context: str | None = h(None, "Reuse this richer-context run folder's samples (no regeneration).")
    n: int = h(8, "Section-3 samples per problem when the traces are generated here.")
    window: tuple[int, int] = h((1, 4), "Section-3 selection window (LOW-HIGH) when the traces are generated here.")
    max_problems: int = h(800, "Section-3 problems to keep when the traces are generated here.")
    trace_max_new_tokens: int | None = h(32768, "Generation budget of the section-3 traces.")
    system_prompt: str = h(PAPER_SYSTEM, "The alpaca 'system' of every SFT example (paper: the boxed instruction).")
    train_overrides: dict[str, Any] = h(
        default_factory=dict, help="sft preset overrides, key=value (sdlens or TRL field: epochs, lr, batch...)."
    )

    def check(self) -> None:
        for name in ("model", "out"):
            if not getattr(self, name):
                raise InputError(None, f"missing {name}", field=name)
        if not self.data and not self.from_richer_context:
            raise InputError(None, "give data (problems for the traces) or from_richer_context", field="data")
        if not self.benchmarks:
            raise InputError(None, "no benchmarks to evaluate on", field="benchmarks")
        if self.n_eval < 1 or self.max_examples < 1:
            raise InputError(None, "n_eval and max_examples must be >= 1", field="n_eval")


@dataclass
class CoverageConfig(EvalSettings):
    """One coverage sweep: every method trained on every coverage level, evaluated along training."""

    coverage: list[str] = h(
        default_factory=lambda: ["1x64", "8x8", "64"],
        help="Coverage levels: KxM (K problems x M copies), K, or a training-file path; default 1x64, 8x8, 64.",
    )
    pool: str | None = h(None, "Build the levels from this problem file (else the shipped seen_<level>.parquet).")
    ood: list[str] = h(default_factory=lambda: ["aime24"], help="Out-of-domain eval sets; default aime24.")
    in_domain: str | None = h(None, "In-domain eval set; default: each level's distinct training problems.")
    methods: list[str] = h(
        default_factory=lambda: ["sdpo-paper", "grpo-paper"],
        help="Training presets to compare: any RL train preset (e.g. the mitigations'); default sdpo-paper,grpo-paper.",
    )
    method_overrides: dict[str, dict[str, Any]] = h(
        default_factory=dict, help="Per method: extra training settings, METHOD:key=value (e.g. learning_rate)."
    )
    train_overrides: dict[str, Any] = h(
        default_factory=dict, help="Training settings for every method, key=value: max_steps, num_generations..."
    )
    eval_every: int | None = h(None, "Save and evaluate a checkpoint every N optimizer steps (None: the preset's).")
    n_eval: int = h(4, "Samples per problem in every evaluation.")
    limit: int | None = h(None, "Evaluate only the first N problems of each eval set.")
    preset: str = h("paper-nothink", "Eval sampling preset (the paper's coverage runs: Qwen3-8B thinking off).")
    reward: str | None = h(None, "Training reward; None: the same grader as the evaluations (paper: paper-reward).")

    def check(self) -> None:
        for name in ("model", "out"):
            if not getattr(self, name):
                raise InputError(None, f"missing {name}", field=name)
        if not self.coverage or not self.methods:
            raise InputError(None, "need at least one coverage level and one method", field="coverage")

        for m in self.methods:
            if m not in PRESETS or PRESETS[m].algo == "sft":
                raise InputError(None, f"method {m!r} is not an RL training preset", field="methods")
        if self.eval_every is not None and self.eval_every < 1:
            raise InputError(None, "eval_every must be >= 1", field="eval_every")
