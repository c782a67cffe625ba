"""One source of truth for options: every option of the converted commands takes its help from its config field."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import typer

from sdlens.cli import app
from sdlens.epistemic.config import AnalyzeConfig, JudgeConfig, MeasureOptions, ProbeConfig
from sdlens.epistemic.segment import Scope
from sdlens.eval_config import EvalConfig
from sdlens.experiments.config import CoverageConfig, EvalSettings, GuidedSFTConfig, RicherContextConfig
from sdlens.fields import field_default, field_help
from sdlens.grading_config import AuditConfig, GradeConfig, MetricsConfig, WorkerSettings
from sdlens.io.keys import KeyMap
from sdlens.lab.config import LabConfig
from sdlens.monitor.config import DetectorConfig, OfflineConfig
from sdlens.train.config import TrainConfig

# experiments: option name -> config field, where they differ
RENAMED = {
    "max_tokens": "max_new_tokens",
    "trace_max_tokens": "trace_max_new_tokens",
    "set_": "train_overrides",
    "method_set": "method_overrides",
}
# options that are no config field (output switches, compare's bootstrap, --help)
CLI_ONLY = {"report", "help", "json", "html"}
COMMAND_ONLY = {("compare",): {"n_boot", "seed"}, ("report",): {"out"}}
# analyze / compare / probe / report: options whose field lives in a nested config
NESTED = {
    **{k: (KeyMap, k) for k in ("text_key", "id_key", "group_key", "correct_key")},
    **{k: (MeasureOptions, k) for k in ("reflection_lexicon", "fork_entropy")},
    **{f"judge_{k}": (JudgeConfig, k) for k in ("model", "backend", "base_url", "cache")},
}
# experiments: the eval_options entries, fields of the EvalConfig they are passed to
EVAL_OPTIONS = {k: (EvalConfig, k) for k in ("base_url", "device", "dtype")}

COMMANDS = {
    ("experiment", "richer-context"): RicherContextConfig,
    ("experiment", "guided-sft"): GuidedSFTConfig,
    ("experiment", "coverage"): CoverageConfig,
    ("analyze",): AnalyzeConfig,
    ("compare",): AnalyzeConfig,
    ("probe",): ProbeConfig,
    ("report",): AnalyzeConfig,
}


def _assert_help_is_the_fields(param: Any, cls: type, field: str) -> None:
    """The option's help is the field's help: the same text, and the same string object, so a copy restated by hand
    in the CLI fails even while its text still matches."""
    assert param.help == field_help(cls, field), (param.name, cls.__name__, field)
    assert param.help is field_help(cls, field), f"{param.name}: help restated instead of read from {cls.__name__}"


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
        nested = {**NESTED, **EVAL_OPTIONS} if issubclass(cls, EvalSettings) else NESTED
        owner, field = nested.get(name, (cls, renamed))
        _assert_help_is_the_fields(param, owner, field)
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


# The commands that fill one config each, or a few: every option is a field of the command's config of the same name
# (or the field named here), or a pure CLI switch listed in SWITCHES; an option that is neither fails (KeyError).
OTHER_COMMANDS: dict[tuple[str, ...], tuple[type, dict[str, tuple[type, str]]]] = {
    ("eval",): (
        EvalConfig,
        {"retries": (EvalConfig, "max_retries"), "tensor_parallel": (EvalConfig, "tensor_parallel_size")},
    ),
    ("train",): (TrainConfig, {}),
    ("lab", "run"): (LabConfig, {}),
    ("monitor",): (OfflineConfig, {"baseline_steps": (DetectorConfig, "baseline_steps")}),
    ("grade",): (
        GradeConfig,
        {"workers": (WorkerSettings, "workers"), "no_think_split": (GradeConfig, "think_aware")},
    ),
    ("graders", "audit"): (
        AuditConfig,
        {
            "grader": (AuditConfig, "graders"),
            "workers": (WorkerSettings, "workers"),
            "examples": (AuditConfig, "max_examples"),
            "no_control": (AuditConfig, "control"),
        },
    ),
    ("metrics",): (MetricsConfig, {"k": (MetricsConfig, "ks")}),
}
# Options that are no config field: output switches, the TRL fields train passes through, the --quick / --full
# switches of lab's mode.
SWITCHES = {
    ("eval",): {"json_out", "no_progress"},
    ("train",): {"max_steps", "config", "set_", "dry_run", "use_vllm", "vllm_mode", "vllm_server_base_url"}
    | {"json_out", "help_config"},
    ("lab", "run"): {"quick", "full", "json_out"},
    ("monitor",): {"json_out", "plot"},
    ("grade",): {"out", "json"},
    ("graders", "audit"): {"json"},
    ("metrics",): {"json"},
}
IDS = [" ".join(p) for p in OTHER_COMMANDS]


def _config_options(path: tuple[str, ...]) -> dict[str, tuple[Any, type, str]]:
    """The command's options that are config fields: name -> (click parameter, config class, field)."""
    cls, special = OTHER_COMMANDS[path]
    params = [p for p in _command(path).params if p.param_type_name == "option" and p.name != "help"]
    out = {p.name: (p, *special.get(p.name, (cls, p.name))) for p in params if p.name not in SWITCHES[path]}
    assert len(out) >= 4, out  # the listing works
    assert not SWITCHES[path] - {p.name for p in params}, "a listed switch is gone"
    return out


@pytest.mark.parametrize("path", list(OTHER_COMMANDS), ids=IDS)
def test_each_option_of_the_other_commands_reads_its_help_from_its_field(path: tuple[str, ...]) -> None:
    for param, cls, field in _config_options(path).values():
        _assert_help_is_the_fields(param, cls, field)


@pytest.mark.parametrize("path", list(OTHER_COMMANDS), ids=IDS)
def test_option_defaults_are_the_config_defaults(path: tuple[str, ...]) -> None:
    """An option with a default of its own (not None, which leaves the config's) has the field's default; a negated
    switch (--no-think-split, --no-control) is off by default, leaving the field's default (on)."""
    checked = 0
    for name, (param, cls, field) in _config_options(path).items():
        if name.startswith("no_"):
            assert param.default is False and field_default(cls, field) is True, name
        elif param.default is not None:
            assert str(param.default) == str(field_default(cls, field)), name  # lab's --out: a Path of the str
            checked += 1
    assert checked, "no default checked"


def test_the_grading_switches_reach_the_config(tmp_path) -> None:
    """--no-think-split turns GradeConfig.think_aware off: the paper-reward grader, which takes no think_aware, then
    refuses it by the CLI's flag name."""
    from typer.testing import CliRunner

    src = tmp_path / "s.jsonl"
    src.write_text('{"response": "\\boxed{1}", "answer": "1"}\n')
    r = CliRunner().invoke(
        app, ["grade", str(src), "-o", str(tmp_path / "o.jsonl"), "-g", "paper-reward", "--no-think-split"]
    )
    assert r.exit_code == 2 and "--no-think-split does not apply to the paper-reward grader" in r.stderr


def test_help_config_lists_every_field_once_with_the_research_options_apart():
    from dataclasses import fields

    from sdlens.cli.train import _config_help
    from sdlens.mitigations.options import SDPOResearchConfig
    from sdlens.train.config import TrainConfig

    text = _config_help()
    head, research = text.split("SDPO research options", 1)
    names = [line.split()[0] for line in text.splitlines() if line.startswith("  ")]
    assert sorted(names) == sorted(f.name for f in fields(TrainConfig))
    for f in fields(SDPOResearchConfig):
        assert f"  {f.name} " in research and f"  {f.name} " not in head
    assert "  algo " in head and "  trl " in head


def test_config_from_takes_the_parameters_named_as_fields() -> None:
    from sdlens.fields import config_from

    params = {"fmt": "generic", "seed": 3, "resamples": 5, "json": True, "k": "1,2"}
    cfg = config_from(MetricsConfig, params, ks=(1, 2), resamples=7)
    # fields named in params are taken, `given` wins over a parameter of the same name, a parameter that is no field
    # (json, k) is left out, and a field with no parameter (tokenizer, by) keeps its default
    assert cfg == MetricsConfig(fmt="generic", ks=(1, 2), resamples=7, seed=3)


class _Captured(Exception):
    pass


# Commands that build their config by field name (sdlens.fields.config_from, or compare's shared declaration): options
# set to values other than their defaults (those named otherwise or converted, and some taken by name), and the config
# the library must receive: the library function, which of its positional arguments is the config (None: the config's
# values come as keyword arguments), the command's arguments, the config.
REACH = {
    "eval": (
        "sdlens.evaluate.run_eval",
        0,
        "--model m --n 3 --top-k 4 --thinking off --data-dir d --retries 4 --tensor-parallel-size 2 --dry-run",
        lambda: EvalConfig(
            model="m", n=3, top_k=4, thinking="off", data_dir="d", max_retries=4, tensor_parallel_size=2, dry_run=True
        ),
    ),
    "probe": (
        "sdlens.behaviour.probe.run_probe",
        0,
        "--model m --data d.jsonl --context answer --format generic --text-key t --correct-key c --max-tokens 9",
        lambda: ProbeConfig(
            "m", Path("d.jsonl"), "answer", fmt="generic", keys=KeyMap(text_key="t", correct_key="c"), max_tokens=9
        ),
    ),
    "experiment guided-sft": (
        "sdlens.experiments.guided_sft.run_guided_sft",
        0,
        "-m m -o o --from-richer-context rc -b a,b -b c --limit 2 --window 1-3 --trace-max-tokens 9 --set lr=0.1"
        " --max-tokens 5 --device cpu --no-report",
        lambda: GuidedSFTConfig(
            model="m", out="o", from_richer_context="rc", benchmarks=["a", "b", "c"], limit=2, window=(1, 3)
        ),
    ),
    "experiment coverage": (
        "sdlens.experiments.coverage.run_coverage",
        0,
        "-m m -o o --coverage 1x64,8x8 --ood a --pool p --in-domain d --method sdpo-paper"
        " --method-set sdpo-paper:lr=0.1 --eval-every 4 --n-eval 3 --reward r --limit 2 --set x=1 --no-report",
        lambda: CoverageConfig(
            model="m",
            out="o",
            coverage=["1x64", "8x8"],
            ood=["a"],
            pool="p",
            in_domain="d",
            methods=["sdpo-paper"],
            method_overrides={"sdpo-paper": {"lr": 0.1}},
            eval_every=4,
            n_eval=3,
            reward="r",
            limit=2,
            train_overrides={"x": 1},
        ),
    ),
    "monitor": (
        "sdlens.monitor.offline.read_run",
        None,
        "{tmp} --format trl --tokenizer tok --baseline-steps 4",
        lambda: {"fmt": "trl", "tokenizer": "tok", "lexicon": "words", "detector": DetectorConfig(baseline_steps=4)},
    ),
    "report": (
        "sdlens.report.traces.write_trace_report",
        1,
        "{tmp}/t.jsonl --lexicon words --measures forks --by source",
        lambda: AnalyzeConfig(lexicon="words", by="source", measures=("forks",)),
    ),
    "compare": (
        "sdlens.epistemic.compare.compare",
        2,
        "{tmp}/t.jsonl {tmp}/t.jsonl --format generic --scope thinking --skip-bad --fork-entropy 0.5 --text-key t",
        lambda: AnalyzeConfig(
            fmt="generic",
            scope=Scope.thinking,
            skip_bad=True,
            keys=KeyMap(text_key="t"),
            measure_options=MeasureOptions(fork_entropy=0.5),
        ),
    ),
}
# guided-sft's renamed and converted options: --trace-max-tokens, --set, --max-tokens (a shared option), --device
GUIDED_SFT_CONVERTED = {"trace_max_new_tokens": 9, "train_overrides": {"lr": 0.1}, "max_new_tokens": 5}


@pytest.mark.parametrize("command", list(REACH))
def test_every_option_reaches_its_config_field(command: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The config the command hands the library (captured at the library's entry point) is the one its options
    describe."""
    from typer.testing import CliRunner

    entry, position, argv, expected = REACH[command]
    seen: list[Any] = []

    def capture(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs if position is None else args[position])
        raise _Captured

    monkeypatch.setattr(entry, capture)
    (tmp_path / "t.jsonl").write_text('{"problem_id": "p", "response": "Wait, 2."}\n')
    r = CliRunner().invoke(app, [*command.split(), *argv.format(tmp=tmp_path).split()])
    assert isinstance(r.exception, _Captured), r.output
    want = expected()
    if command == "experiment guided-sft":
        want = dataclasses.replace(want, **GUIDED_SFT_CONVERTED, eval_options={"device": "cpu"})
    assert seen == [want]


def test_coverage_options_left_out_keep_the_configs_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    seen: list[Any] = []

    def capture(cfg: Any, **kwargs: Any) -> Any:
        seen.append(cfg)
        raise _Captured

    monkeypatch.setattr("sdlens.experiments.coverage.run_coverage", capture)
    r = CliRunner().invoke(app, ["experiment", "coverage", "-m", "m", "-o", "o", "--n-eval", "2", "--no-report"])
    assert isinstance(r.exception, _Captured), r.output
    assert seen == [CoverageConfig(model="m", out="o", n_eval=2)]
    assert seen[0].coverage == ["1x64", "8x8", "64"] and seen[0].methods == ["sdpo-paper", "grpo-paper"]
