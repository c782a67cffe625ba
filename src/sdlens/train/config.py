"""``TrainConfig``: everything ``sdlens train`` needs, YAML-loadable, layered over presets.

Layers, later wins: the field defaults < the preset < the ``--config`` YAML file < command-line flags (``--model``,
``--max-steps``, ...) < ``--set key=value``. A key is a :class:`TrainConfig` field, or a field of the algorithm's
TRL config (``SDPOConfig`` / ``GRPOConfig`` / ``SFTConfig``), plain or as ``trl.<field>``; anything else is an
error. YAML::

    algo: sdpo
    preset: sdpo-paper
    model: Qwen/Qwen3-8B
    data: data/math/train.parquet
    out: runs/sdpo
    learning_rate: 2.0e-5        # a TRL field, same as trl: {learning_rate: 2.0e-5}
    trl:
      save_steps: 10
"""

from __future__ import annotations

import difflib
import os
import re
import types
import typing
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any

from sdlens.errors import InputError
from sdlens.fields import documented as h
from sdlens.mitigations.options import SDPOResearchConfig, validate_mitigations
from sdlens.prompts import PAPER_SUFFIX
from sdlens.runfolder import atomic_path
from sdlens.train.presets import get_preset, preset_values

__all__ = [
    "ALGOS",
    "TrainConfig",
    "derive_batches",
    "load_yaml",
    "parse_set",
    "resolve_config",
    "save_config",
    "trl_config_class",
    "trl_defaults",
    "trl_field_names",
]

ALGOS = ("sdpo", "grpo", "sft")


@dataclass
class _CoreTrainConfig:
    """The fields of :class:`TrainConfig` that every run has (the research options come after them)."""

    algo: str = h("sdpo", "sdpo (self-distillation, TRL's SDPOTrainer), grpo (GRPOTrainer) or sft (SFTTrainer).")
    preset: str | None = h(
        None,
        "A named preset (sdlens.train.presets), whose values come before this config's: sdpo-paper (sdlens train's "
        "default for sdpo), sdpo-paper-nothink, sdpo-paper-ema, sdpo-coverage, grpo-paper (default for grpo), "
        "grpo-coverage, sft (default for sft), a mitigation preset (docs/mitigations.md), or none (TRL's defaults).",
    )
    model: str | None = h(None, "smollm2-135m, tiny-random, a local model folder, or a hub id.")
    data: str | None = h(None, "A verl parquet, a JSONL / JSON / Parquet file, or a Hugging Face dataset id.")
    out: str | None = h(None, "Run folder: checkpoints, the final model, trainer_state.json, the resolved config.")
    data_split: str = h("train", "Split of a hub dataset.")
    data_config: str | None = h(None, "Configuration name of a hub dataset.")
    prompt_key: str | None = h(None, "Field with the prompt (messages or text); default: auto-detected.")
    answer_key: str | None = h(None, "Field with the ground truth (RL); default: reward_model.ground_truth, answer...")
    completion_key: str | None = h(None, "Field with the target response (SFT); default: completion, output...")
    prompt_format: str = h("as-is", "as-is, or paper-dapo: rewrite raw DAPO-Math-17k prompts as the paper did.")
    question_suffix: str = h(PAPER_SUFFIX, "Appended to plain-text questions (not to chat-message prompts).")
    max_rows: int | None = h(None, "Use only the first N rows of the data.")
    max_prompt_tokens: int | None = h(None, "Drop rows whose templated prompt is longer (verl's overlong filter).")
    enable_thinking: bool | None = h(None, "Passed to the chat template (trl.chat_template_kwargs); None: not set.")
    reward: str = h("math-verify", "paper-reward, math-verify (any sdlens grader), or package.module:function.")
    reward_workers: int | None = h(None, "Grading processes per rank (default: min(cores, 8)).")
    reward_timeout: int = h(5, "math-verify time limit in seconds (math-verify grader).")
    teacher_context: str = h("sdlens", "SDPO teacher prompts: sdlens (the paper's, pre-opened <think> fix) or trl.")
    reprompt_truncation: str = h("right", "Cut over-long teacher prompts at the right (paper) or the left (TRL).")
    log_teacher_prompts: int = h(1, "Teacher prompts per rollout batch written to OUT/teacher_prompts.jsonl.")
    chunked_distillation: bool = h(True, "SDPO: the chunked loss from hidden states (no [B,T,V] logits); off: TRL's.")
    prompts_per_step: int | None = h(None, "Prompts per rollout batch (paper 256); None: TRL's batch fields as set.")
    mini_batches_per_step: int = h(1, "Optimizer steps per rollout batch (paper 2).")
    ema_once_per_step: bool = h(True, "EMA teacher: update once per rollout batch (paper), not per optimizer step.")
    precision: str = h("auto", "auto (bf16 on a GPU that has it, else fp32), bf16, fp16 or fp32 (mixed precision).")
    dtype: str = h("float32", "Weights dtype when loading the model: float32, bfloat16, float16 or auto.")
    resume: bool = h(False, "Continue from the last complete checkpoint in OUT.")
    check_ranks: bool = h(True, "After training, check that every rank holds the same weights (DDP).")
    epistemic_monitor: bool = h(
        True,
        "SDPO/GRPO: log epistemic/* telemetry to report_to and OUT/epistemic.jsonl (on by default; docs/monitor.md).",
    )
    stop_on_suppression: bool = h(False, "Stop training once the suppression detector says suppressing.")
    trl: dict[str, Any] = h(
        default_factory=dict, help="Values for the algorithm's TRL config (SDPOConfig, GRPOConfig, SFTConfig)."
    )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainConfig(SDPOResearchConfig, _CoreTrainConfig):
    """One training run. Every field is documented in ``help`` (``sdlens train --help-config`` prints them): the core
    fields, then the SDPO trainer's research options (:class:`sdlens.mitigations.options.SDPOResearchConfig`)."""


TOP_FIELDS = {f.name: f for f in fields(TrainConfig)}


def trl_config_class(algo: str):
    """The TRL config class for ``algo`` (for sdpo, sdlens' ``SdlensSDPOConfig``: TRL's ``SDPOConfig`` plus the
    chunked loss and the paper's teacher context)."""
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    if algo == "sdpo":
        from sdlens.train.sdpo_trainer import SdlensSDPOConfig

        return SdlensSDPOConfig
    if algo == "grpo":
        from trl import GRPOConfig

        return GRPOConfig
    if algo == "sft":
        from trl import SFTConfig

        return SFTConfig
    raise ValueError(f"algo must be one of {', '.join(ALGOS)}, got {algo!r}")


def trl_field_names(algo: str) -> dict[str, Any]:
    return {f.name: f for f in fields(trl_config_class(algo)) if f.init}


def trl_defaults(algo: str) -> dict[str, Any]:
    """TRL's field defaults (before ``__post_init__``)."""
    out = {}
    for name, f in trl_field_names(algo).items():
        if f.default is not MISSING:
            out[name] = f.default
        elif f.default_factory is not MISSING:
            out[name] = f.default_factory()
    return out


# ---------------------------------------------------------------- values


def _type_names(tp: Any) -> set[str]:
    if isinstance(tp, str):
        return set(re.findall(r"[A-Za-z_]+", tp))
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        out: set[str] = set()
        for a in typing.get_args(tp):
            out |= _type_names(a)
        return out
    if origin is not None:
        return {getattr(origin, "__name__", str(origin))}
    return {getattr(tp, "__name__", str(tp))}


def _coerce(value: Any, tp: Any) -> Any:
    """Strings from YAML / --set into the field's type where that is unambiguous (``1e-5`` is a string in YAML)."""
    names = _type_names(tp)
    if isinstance(value, bool) and "bool" not in names and names & {"str", "SaveStrategy", "IntervalStrategy"}:
        return "yes" if value else "no"  # YAML 1.1 read `no` / `yes` as booleans (save_strategy: no)
    if isinstance(value, str):
        low = value.strip().lower()
        if low in ("none", "null", "~") and "None" in names:
            return None
        if "bool" in names and low in ("true", "false", "yes", "no", "on", "off"):
            return low in ("true", "yes", "on")
        if "int" in names and re.fullmatch(r"[+-]?\d+", low):
            return int(low)
        if "float" in names:
            try:
                return float(low)
            except ValueError:
                pass
    if isinstance(value, int) and not isinstance(value, bool) and "float" in names and "int" not in names:
        return float(value)
    return value


def parse_set(item: str) -> tuple[str, Any]:
    """``key=value`` (value parsed as YAML: numbers, booleans, lists, dicts) -> ``(key, value)``."""
    import yaml

    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"--set expects key=value, got {item!r}")
    if raw.strip().lower() in ("yes", "no", "on", "off", "y", "n"):
        return key.strip(), raw.strip()  # strings; a bool field turns them into booleans
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def load_yaml(path: str | Path) -> dict[str, Any]:
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise InputError(path, f"cannot read: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise InputError(path, f"not YAML: {str(e).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(path, "expected a mapping of config keys")
    return data


def _flatten(data: dict[str, Any]) -> list[tuple[str, Any]]:
    out = []
    for k, v in data.items():
        if k == "trl":
            if v is None:
                continue
            if not isinstance(v, dict):
                raise ValueError("'trl' must be a mapping of TRL config fields")
            out.extend((f"trl.{kk}", vv) for kk, vv in v.items())
        else:
            out.append((k, v))
    return out


class _Resolver:
    def __init__(self, algo: str):
        self.algo = algo
        self.trl_fields = trl_field_names(algo)

    def key(self, key: str) -> tuple[str, str]:
        if key.startswith("trl."):
            name = key[4:]
            if name in self.trl_fields:
                return "trl", name
        else:
            name = key
            if key in TOP_FIELDS:
                return "top", key
            if key in self.trl_fields:
                return "trl", key
        pool = [*TOP_FIELDS, *self.trl_fields]
        close = difflib.get_close_matches(name, pool, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown config key {key!r} for {self.algo} (not a sdlens or TRL field){hint}")

    def apply(self, cfg: dict[str, Any], trl: dict[str, Any], key: str, value: Any) -> None:
        where, name = self.key(key)
        if where == "top":
            if name == "trl":
                raise ValueError("'trl' must be a mapping")
            cfg[name] = _coerce(value, TOP_FIELDS[name].type)
        else:
            trl[name] = _coerce(value, self.trl_fields[name].type)


def resolve_config(
    algo: str | None = None,
    *,
    preset: str | None = None,
    config_file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    sets: list[str] | tuple[str, ...] = (),
) -> TrainConfig:
    """Build a :class:`TrainConfig` from its layers (see the module doc). ``overrides`` are CLI flags (``None``
    values are skipped); ``sets`` are ``key=value`` strings."""

    file_data = load_yaml(config_file) if config_file else {}
    algo = algo or file_data.get("algo") or "sdpo"
    if algo not in ALGOS:
        raise ValueError(f"algo must be one of {', '.join(ALGOS)}, got {algo!r}")
    if file_data.get("algo") not in (None, algo):
        raise ValueError(f"the config file is for {file_data['algo']!r}, not {algo!r}")
    preset = preset or file_data.get("preset")
    layers: list[list[tuple[str, Any]]] = []
    if preset:
        p = get_preset(preset)
        if p.algo != algo:
            raise ValueError(f"preset {preset!r} is for {p.algo}, not {algo}")
        layers.append(list(preset_values(preset).items()))
    layers.append([(k, v) for k, v in _flatten(file_data) if k not in ("algo", "preset")])
    layers.append([(k, v) for k, v in (overrides or {}).items() if v is not None])
    layers.append([parse_set(s) for s in sets])

    resolver = _Resolver(algo)
    values: dict[str, Any] = {}
    trl: dict[str, Any] = {}
    for layer in layers:
        for k, v in layer:
            resolver.apply(values, trl, k, v)
    values["algo"] = algo
    values["preset"] = preset
    cfg = TrainConfig(**values, trl=trl)
    _validate(cfg)
    return cfg


def _validate(cfg: TrainConfig) -> None:
    choices = {
        "teacher_context": ("sdlens", "trl"),
        "reprompt_truncation": ("left", "right"),
        "precision": ("auto", "bf16", "fp16", "fp32"),
        "dtype": ("float32", "bfloat16", "float16", "auto"),
        "prompt_format": ("as-is", "paper-dapo"),
    }
    for name, allowed in choices.items():
        if getattr(cfg, name) not in allowed:
            raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {getattr(cfg, name)!r}")
    if cfg.prompts_per_step is not None and cfg.prompts_per_step < 1:
        raise ValueError("prompts_per_step must be >= 1")
    if cfg.mini_batches_per_step < 1:
        raise ValueError("mini_batches_per_step must be >= 1")

    validate_mitigations(cfg)


def save_config(cfg: TrainConfig, path: str | Path, extra: dict[str, Any] | None = None) -> None:
    """Write the resolved config as YAML (atomically)."""
    import yaml

    data = cfg.to_dict()
    if extra:
        data.update(extra)
    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=120), encoding="utf-8")


# ---------------------------------------------------------------- batch sizes

BATCH_FIELDS = ("gradient_accumulation_steps", "steps_per_generation", "generation_batch_size")


def derive_batches(cfg: TrainConfig, world_size: int, n_rows: int | None = None) -> dict[str, Any]:
    """TRL batch fields for ``prompts_per_step`` x ``num_generations`` completions per rollout batch, split into
    ``mini_batches_per_step`` optimizer steps, over ``world_size`` processes of ``per_device_train_batch_size``.

    With fewer data rows than ``prompts_per_step``, the rollout batch is the whole data set (rounded down to a
    multiple of ``mini_batches_per_step``) and ``note`` says so. Returns the TRL fields plus ``note``.
    """
    if cfg.prompts_per_step is None or cfg.algo == "sft":
        return {}
    clash = [k for k in BATCH_FIELDS if k in cfg.trl]
    if clash:
        raise ValueError(
            f"{', '.join(clash)} and prompts_per_step are both set; set prompts_per_step: null to use TRL's fields"
        )
    defaults = trl_defaults(cfg.algo)
    n_gen = int(cfg.trl.get("num_generations", defaults.get("num_generations", 8)))
    per_device = int(cfg.trl.get("per_device_train_batch_size", defaults.get("per_device_train_batch_size", 8)))
    prompts = cfg.prompts_per_step
    note = None
    mb = cfg.mini_batches_per_step
    if n_rows is not None and n_rows < prompts:
        capped = n_rows - n_rows % mb
        if capped < 1:
            raise ValueError(f"the data has {n_rows} rows, fewer than the {mb} mini-batches of one step")
        note = f"prompts_per_step {prompts} -> {capped}: the data has only {n_rows} rows"
        prompts = capped
    completions = prompts * n_gen
    if completions % mb:
        raise ValueError(f"{prompts} prompts x {n_gen} rollouts do not split into {mb} mini-batches")
    per_opt = completions // mb
    per_micro = per_device * world_size
    if per_opt % per_micro:
        raise ValueError(
            f"an optimizer step of {per_opt} completions does not split over {world_size} processes x "
            f"per_device_train_batch_size {per_device}; change per_device_train_batch_size or prompts_per_step"
        )
    grad_acc = per_opt // per_micro
    out: dict[str, Any] = {
        "gradient_accumulation_steps": grad_acc,
        "steps_per_generation": grad_acc * mb,
        "prompts": prompts,
        "completions": completions,
        "note": note,
    }
    return out
