"""``LabConfig``: one organism run (quick = the demo, full = the published numbers), and the base model's
``PretrainConfig``. A light module: ``sdlens lab run --help`` reads each option's help from these fields."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from sdlens.fields import documented as h
from sdlens.lab.model import ModelConfig
from sdlens.mitigations import MITIGATION_PRESETS

__all__ = ["CORPORA", "MODES", "LabConfig", "PretrainConfig", "lab_config"]

MODES = ("quick", "full")
CORPORA = ("transfer", "scripted")


@dataclass(frozen=True)
class PretrainConfig:
    """How the base model is pretrained (:mod:`sdlens.lab.pretrain`)."""

    corpus: str = h(
        "transfer", "transfer: hints only on the power family; scripted: also on in-domain root-finding problems."
    )
    unguided_per_problem: int = h(4, "Unguided traces per in-domain problem (each a fresh random candidate order).")
    guided_per_problem: int = h(3, "Hinted root-finding examples per in-domain problem (the scripted corpus only).")
    power_unguided_per_problem: int = h(2, "Unguided traces per power-family problem.")
    power_hinted_per_problem: int = h(6, "Hinted examples per power-family problem (72 problems at m = 7).")
    guided_prefix_misses: tuple[float, ...] = h(
        (0.5, 0.3, 0.2), "P(0, 1, 2 failed tries) in the untrained prefix of a hinted example."
    )
    steps: int = h(2000, "Optimizer steps (copying the hint and comparing with c come last, after 800-1,400 steps).")
    batch_size: int = h(16, "Examples per optimizer step.")
    lr: float = h(2e-3, "Peak learning rate.")
    warmup: int = h(100, "Linear warm-up steps.")
    min_lr_ratio: float = h(0.1, "Cosine decay to this share of lr.")
    # 0.1: at 0.01 a seed memorised which x is each pool problem's root instead of comparing the check's result with
    # c (OOD accuracy 6%); 0.1 fixed that seed but not another (the gate catches those); at 1.0 it learned neither
    # (docs/organism.md, design notes)
    weight_decay: float = h(0.1, "AdamW weight decay.")
    threads: int = h(2, "torch CPU threads.")
    seed: int = h(
        0, "Seed of the initial weights, the corpus, the gate split, the batch order, training and the gate's sampling."
    )
    model: ModelConfig = h(default_factory=ModelConfig, help="Size of the base model.")
    gate_problems: int = h(
        20, "The gate (sdlens.lab.gate): pool problems kept out of the corpus to check the model compares, not recalls."
    )
    gate_samples: int = h(4, "Unguided answers sampled per gate problem.")
    gate_max_new_tokens: int = h(80, "Generation budget of a gate answer.")
    max_attempts: int = h(3, "Pretrain again from another initialisation while the gate fails, at most this often.")


@dataclass
class LabConfig:
    """Everything ``sdlens lab run`` does; every field's help is its documentation."""

    out: str = h(
        "out/lab",
        "Run folder (reruns reuse finished stages): data, corpus, base model, the three experiment folders, "
        "summary, report.",
    )
    mode: str = h("quick", "quick (the demo: 1 seed, <= 15 min on 2 cores) or full (3 seeds, more steps).")
    seeds: int = h(
        1,
        "Independent repeats (seed 0..N-1; quick 1, full 3): split, corpus, base model, sampling and training "
        "all vary.",
    )
    modulus: int = h(7, "The task's prime modulus m: find x in 0..m-1 with (a x + b) mod m = c.")
    ood_fraction: float = h(0.25, "Share of (a, b, c) problems held out from every training stage (the OOD set).")
    corpus: str = h(
        "transfer",
        "Pretraining corpus: transfer (hints only on another task family, so how a hinted model treats the "
        "root-finding task is measured) or scripted (also hinted root-finding examples: effect 1 is then a premise, "
        "labelled 'given (premise)').",
    )
    pretrain: PretrainConfig = h(default_factory=PretrainConfig, help="Base-model pretraining.")
    temperature: float = h(1.0, "Sampling temperature everywhere (the organism is calibrated at 1).")
    max_new_tokens: int = h(80, "Generation budget: about three tries, so exploring succeeds often, not always.")
    rc_n: int = h(8, "Richer context: samples per problem (paper 8).")
    rc_max_problems: int = h(40, "Richer context: problems kept with 1-4 of n correct (paper 100).")
    rc_contexts: tuple[str, ...] = h(("none", "s"), "Richer context: contexts to sample (none, s, s-nothink, regen).")
    sft_epochs: int = h(3, "Guided SFT: epochs over each SFT set.")
    sft_lr: float = h(5e-4, "Guided SFT: learning rate (the organism was pretrained at 2e-3).")
    sft_batch: int = h(8, "Guided SFT: examples per optimizer step.")
    n_eval: int = h(8, "Samples per problem in every evaluation.")
    ood_limit: int | None = h(None, "Evaluate only the first N OOD problems (None: all).")
    coverage: tuple[str, ...] = h(("1x64", "8x8"), "Coverage levels: K problems x M copies.")
    methods: tuple[str, ...] = h(("sdpo-paper", "grpo-paper"), "RL presets compared on each coverage level.")
    rl_steps: int = h(32, "Optimizer steps per RL run.")
    rl_lr_scale: float = h(20.0, "RL learning rate = the preset's (SDPO 1e-5, GRPO 1e-6: for 8B models) x this.")
    rl_prompts: int = h(8, "Prompts per rollout batch.")
    rl_generations: int = h(8, "Rollouts per prompt (paper 8).")
    distill_topk: int = h(16, "SDPO: distil over the student's top-k tokens + tail (paper 100 of ~150k; V < 100 here).")
    eval_every: int = h(16, "Evaluate an RL checkpoint every N optimizer steps.")
    matched_lr: bool = h(
        True,
        "Matched learning-rate controls on the narrowest coverage level: GRPO at SDPO's learning rate and SDPO at "
        "GRPO's (OUT/seed-K/controls; summary.json `controls.matched_lr`).",
    )
    mitigations: bool = h(
        False,
        "Also train every mitigation preset (sdlens.mitigations.MITIGATION_PRESETS) on `mitigation_level` (8x8), "
        "beside `methods` (sdpo-paper, grpo-paper), in its own "
        "stage (OUT/seed-K/mitigations); summary.json then gains `mitigations` (issue 10). A finished run folder can "
        "be rerun with it: only the new stage runs.",
    )
    mitigation_level: str = h(
        "8x8", "The coverage level the mitigations are trained on and compared at (one of `coverage`)."
    )
    threads: int = h(2, "torch CPU threads for pretraining and training.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def all_methods(self) -> tuple[str, ...]:
        """Every RL preset this run trains: ``methods``, plus the mitigation presets if asked."""
        return tuple(self.methods) + self.mitigation_methods()

    def mitigation_methods(self) -> tuple[str, ...]:
        """The mitigation presets trained in the mitigations stage (none unless ``mitigations``)."""
        if not self.mitigations:
            return ()

        return tuple(m for m in MITIGATION_PRESETS if m not in self.methods)


def lab_config(mode: str = "quick", **changes: Any) -> LabConfig:
    """The named mode's settings with ``changes`` on top (``None`` values ignored)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    cfg = LabConfig(mode=mode)
    if mode == "full":  # the same base-model recipe; more seeds, samples, levels and RL steps
        cfg = replace(
            cfg,
            seeds=3,
            rc_max_problems=80,
            rc_contexts=("none", "s", "s-nothink", "regen"),
            rl_steps=48,
            eval_every=12,
            coverage=("1x64", "8x8", "64"),
        )
    cfg = replace(cfg, **{k: v for k, v in changes.items() if v is not None})
    if cfg.corpus not in CORPORA:
        raise ValueError(f"corpus must be one of {', '.join(CORPORA)}, got {cfg.corpus!r}")
    if cfg.mitigations and cfg.mitigation_level not in cfg.coverage:
        raise ValueError(
            f"mitigation_level {cfg.mitigation_level!r} is not one of the coverage levels ({', '.join(cfg.coverage)})"
        )
    return cfg
