"""One source of truth for options: every option of the converted commands takes its help from its config field."""

from __future__ import annotations

from typing import Any

import pytest
import typer

from sdlens.cli import app
from sdlens.epistemic.config import AnalyzeConfig, JudgeConfig, MeasureOptions, ProbeConfig
from sdlens.experiments.config import CoverageConfig, EvalSettings, GuidedSFTConfig, RicherContextConfig
from sdlens.fields import field_default, field_help
from sdlens.io.keys import KeyMap

# experiments: option name -> config field, where they differ
RENAMED = {
    "max_tokens": "max_new_tokens",
    "trace_max_tokens": "trace_max_new_tokens",
    "set_": "train_overrides",
    "method_set": "method_overrides",
}
# options that are no config field (eval_options entries, output switches, compare's bootstrap, --help)
CLI_ONLY = {"base_url", "device", "dtype", "report", "help", "json", "html"}
COMMAND_ONLY = {("compare",): {"n_boot", "seed"}, ("report",): {"out"}}
# analyze / compare / probe / report: options whose field lives in a nested config
NESTED = {
    **{k: (KeyMap, k) for k in ("text_key", "id_key", "group_key", "correct_key")},
    **{k: (MeasureOptions, k) for k in ("reflection_lexicon", "fork_entropy")},
    **{f"judge_{k}": (JudgeConfig, k) for k in ("model", "backend", "base_url", "cache")},
}

COMMANDS = {
    ("experiment", "richer-context"): RicherContextConfig,
    ("experiment", "guided-sft"): GuidedSFTConfig,
    ("experiment", "coverage"): CoverageConfig,
    ("analyze",): AnalyzeConfig,
    ("compare",): AnalyzeConfig,
    ("probe",): ProbeConfig,
    ("report",): AnalyzeConfig,
}


def _command(path: tuple[str, ...]) -> Any:
    cmd = typer.main.get_command(app)
    for name in path:
        cmd = cmd.commands[name]
    return cmd


@pytest.mark.parametrize("path", list(COMMANDS), ids=[" ".join(p) for p in COMMANDS])
def test_every_option_help_is_its_config_fields_help(path: tuple[str, ...]) -> None:
    cls = COMMANDS[path]
    params = {p.name: p for p in _command(path).params if p.param_type_name == "option"}
    assert set(params) - CLI_ONLY, "no option found"
    cli_only = CLI_ONLY | COMMAND_ONLY.get(path, set())
    for name, param in params.items():
        if name in cli_only:
            continue
        renamed = RENAMED.get(name, name) if issubclass(cls, EvalSettings) else name
        owner, field = NESTED.get(name, (cls, renamed))
        assert param.help == field_help(owner, field), name
    if issubclass(cls, EvalSettings):
        assert {"base_url", "device", "dtype"} <= set(params)  # the eval options stay on every experiment


def test_the_experiments_share_one_eval_settings_dataclass() -> None:
    shared = {"model", "out", "backend", "eval_options", "seed", "grader", "batch_size", "lexicon", "preset"}
    for cls in (RicherContextConfig, GuidedSFTConfig, CoverageConfig):
        assert issubclass(cls, EvalSettings)
        own = set(vars(cls).get("__annotations__", {}))
        # a config restates a shared field only to change its default (coverage's preset, richer-context's top_k)
        assert not own & (shared - {"preset"}), (cls.__name__, own & shared)


@pytest.mark.parametrize("path", [p for p in COMMANDS if p[0] == "experiment"], ids=lambda p: p[1])
def test_shared_option_defaults_are_the_config_defaults(path: tuple[str, ...]) -> None:
    cls = COMMANDS[path]
    params = {p.name: p for p in _command(path).params}
    for name in ("backend", "seed", "grader", "lexicon", "batch_size"):
        assert params[name].default == field_default(cls, name), name


def test_shared_options_reach_the_config(tmp_path) -> None:
    """The options declared once still land in the config: a bad --window and a bad --set are reported by field."""
    from typer.testing import CliRunner

    r = CliRunner().invoke(
        app, ["experiment", "richer-context", "-m", "x", "-d", "y", "-o", str(tmp_path), "--window", "a-b"]
    )
    assert r.exit_code == 2 and "window" in r.stderr
    r = CliRunner().invoke(app, ["experiment", "coverage", "-m", "x", "-o", str(tmp_path), "--method-set", "nocolon"])
    assert r.exit_code == 2 and "METHOD:key=value" in r.stderr
