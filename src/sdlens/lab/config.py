"""``LabConfig``: one organism run (quick = the demo, full = the published numbers)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from sdlens.lab.pretrain import PretrainConfig
from sdlens.mitigations import MITIGATION_PRESETS

__all__ = ["MODES", "LabConfig", "lab_config"]

MODES = ("quick", "full")


def _f(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass
class LabConfig:
    """Everything ``sdlens lab run`` does; every field's help is its documentation."""

    out: str = _f("out/lab", "Run folder: data, corpus, base model, the three experiment folders, summary, report.")
    mode: str = _f("quick", "quick (the demo: 1 seed, <= 15 min on 2 cores) or full (3 seeds, more steps).")
    seeds: int = _f(1, "Independent repeats (seed 0..N-1): split, corpus, base model, sampling and training all vary.")
    modulus: int = _f(7, "The task's prime modulus m: find x in 0..m-1 with (a x + b) mod m = c.")
    ood_fraction: float = _f(0.25, "Share of (a, b, c) problems held out from every training stage (the OOD set).")
    corpus: str = _f(
        "transfer",
        "Pretraining corpus: transfer (hints only on another task family, so how a hinted model treats the "
        "root-finding task is measured) or scripted (also hinted root-finding examples: effect 1 is then a premise, "
        "labelled 'given (premise)').",
    )
    pretrain: PretrainConfig = field(default_factory=PretrainConfig, metadata={"help": "Base-model pretraining."})
    temperature: float = _f(1.0, "Sampling temperature everywhere (the organism is calibrated at 1).")
    max_new_tokens: int = _f(80, "Generation budget: about three tries, so exploring succeeds often, not always.")
    rc_n: int = _f(8, "Richer context: samples per problem (paper 8).")
    rc_max_problems: int = _f(40, "Richer context: problems kept with 1-4 of n correct (paper 100).")
    rc_contexts: tuple[str, ...] = _f(("none", "s"), "Richer context: contexts to sample (none, s, s-nothink, regen).")
    sft_epochs: int = _f(3, "Guided SFT: epochs over each SFT set.")
    sft_lr: float = _f(5e-4, "Guided SFT: learning rate (the organism was pretrained at 2e-3).")
    sft_batch: int = _f(8, "Guided SFT: examples per optimizer step.")
    n_eval: int = _f(8, "Samples per problem in every evaluation.")
    ood_limit: int | None = _f(None, "Evaluate only the first N OOD problems (None: all).")
    coverage: tuple[str, ...] = _f(("1x64", "8x8"), "Coverage levels: K problems x M copies.")
    methods: tuple[str, ...] = _f(("sdpo-paper", "grpo-paper"), "RL presets compared on each coverage level.")
    rl_steps: int = _f(32, "Optimizer steps per RL run.")
    rl_lr_scale: float = _f(20.0, "RL learning rate = the preset's (SDPO 1e-5, GRPO 1e-6: for 8B models) x this.")
    rl_prompts: int = _f(8, "Prompts per rollout batch.")
    rl_generations: int = _f(8, "Rollouts per prompt (paper 8).")
    distill_topk: int = _f(
        16, "SDPO: distil over the student's top-k tokens + tail (paper 100 of ~150k; V < 100 here)."
    )
    eval_every: int = _f(16, "Evaluate an RL checkpoint every N optimizer steps.")
    matched_lr: bool = _f(
        True,
        "Matched learning-rate controls on the narrowest coverage level: GRPO at SDPO's learning rate and SDPO at "
        "GRPO's (OUT/seed-K/controls; summary.json `controls.matched_lr`).",
    )
    mitigations: bool = _f(
        False,
        "Also train every mitigation preset (sdlens.mitigations.MITIGATION_PRESETS) on `mitigation_level`, in its own "
        "stage (OUT/seed-K/mitigations); summary.json then gains `mitigations` (issue 10). A finished run folder can "
        "be rerun with it: only the new stage runs.",
    )
    mitigation_level: str = _f(
        "8x8", "The coverage level the mitigations are trained on and compared at (one of `coverage`)."
    )
    threads: int = _f(2, "torch CPU threads for pretraining and training.")

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
    from sdlens.lab.pretrain import CORPORA

    if cfg.corpus not in CORPORA:
        raise ValueError(f"corpus must be one of {', '.join(CORPORA)}, got {cfg.corpus!r}")
    if cfg.mitigations and cfg.mitigation_level not in cfg.coverage:
        raise ValueError(
            f"mitigation_level {cfg.mitigation_level!r} is not one of the coverage levels ({', '.join(cfg.coverage)})"
        )
    return cfg
