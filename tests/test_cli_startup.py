"""CLI start-up: `sdlens --help` and the package imports load no heavy module (timings live in bench/analyze.py)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

# none of these is needed to parse arguments or print help; each costs 10-1000 ms to import
HEAVY = ("numpy", "orjson", "pyarrow", "polars", "torch", "transformers", "trl", "math_verify", "matplotlib")


def imported_modules(*argv: str) -> set[str]:
    """Every module a fresh interpreter imports for `python -X importtime ARGV` (its stderr lists them)."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", *argv], capture_output=True, text=True, check=True, timeout=120
    )
    return {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}


@pytest.mark.parametrize(
    "argv",
    [("-m", "sdlens.cli", "--help"), ("-m", "sdlens.cli", "analyze", "--help"), ("-c", "import sdlens, sdlens.cli")],
    ids=["help", "analyze-help", "import"],
)
def test_start_up_imports_no_heavy_module(argv: tuple[str, ...]) -> None:
    mods = imported_modules(*argv)
    assert "sdlens.cli" in mods or "sdlens" in mods  # the listing works
    heavy = sorted(m for m in mods if m.split(".")[0] in HEAVY)
    assert not heavy, heavy
    assert "sdlens.schema" not in mods and "sdlens.epistemic.count" not in mods


def test_lazy_package_attributes_still_resolve() -> None:
    import sdlens
    import sdlens.epistemic as ep
    from sdlens.schema import Sample

    assert sdlens.Sample is Sample
    assert ep.count_texts.__module__ == "sdlens.epistemic.count"
    assert ep.load_lexicon("paper").mode == "substring"
    with pytest.raises(AttributeError):
        _ = sdlens.no_such_name
    with pytest.raises(AttributeError):
        _ = ep.no_such_name


def test_analyze_json_runs_without_typer_rich_or_grading(tmp_path) -> None:
    """`sdlens analyze FILE --json` takes the argparse path (sdlens.cli.fastpath): none of typer, click, rich,
    pydantic, the other commands' modules or the grading package is imported, and the answer is right."""
    trace = tmp_path / "run.jsonl"
    trace.write_text('{"generated_responses": ["Wait, hmm, maybe.", "likely unlikely"]}\n')
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "sdlens.cli", "analyze", str(trace), "--json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert '"total":5' in proc.stdout
    mods = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "sdlens.epistemic.analyze" in mods  # the listing works
    slow = sorted(m for m in mods if m.split(".")[0] in ("typer", "click", "rich", "pydantic", "pydantic_core"))
    assert not slow, slow
    assert not {"sdlens.cli.typer_app", "sdlens.cli.eval", "sdlens.grading"} & mods


EARLY_SCAN_PROBE = """
import sys
import sdlens.epistemic.scan as scan

def probe(init):
    def wrapped(self, path, settings):
        print("scan", settings.scope, "argparse" in sys.modules, "numpy" in sys.modules, file=sys.stderr, flush=True)
        init(self, path, settings)
    return wrapped

scan.PaperScan.__init__ = probe(scan.PaperScan.__init__)
sys.argv = ["sdlens", *sys.argv[1:]]
from sdlens.cli import main
main()
"""


@pytest.mark.parametrize(
    ("options", "expected"),
    [((), "scan full False False"), (("--scope", "thinking"), "scan thinking True False")],
    ids=["defaults", "an-option"],
)
def test_analyze_starts_counting_before_reading_its_options(tmp_path, options, expected) -> None:
    """`sdlens analyze FILE --json` starts the file's scan before argparse, the options and numpy load, and the
    command takes that scan over (one scan in all); with an option given, the scan starts once the options are
    read. The answer is the same either way."""
    trace = tmp_path / "run.jsonl"
    trace.write_text('{"generated_responses": ["<think>Wait, hmm.</think> maybe", "likely"]}\n')
    proc = subprocess.run(
        [sys.executable, "-c", EARLY_SCAN_PROBE, "analyze", str(trace), "--json", *options],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert proc.stderr.splitlines() == [expected]
    assert json.loads(proc.stdout)["total"] == (2 if options else 4)


def test_top_level_help_imports_no_command_module_nor_typer() -> None:
    """`sdlens --help` prints the command table (sdlens.cli.commands) without typer, click, rich or the commands."""
    mods = imported_modules("-m", "sdlens.cli", "--help")
    assert "sdlens.cli.commands" in mods  # the listing works
    slow = sorted(m for m in mods if m.split(".")[0] in ("typer", "click", "rich", "pydantic", "pydantic_core"))
    assert not slow, slow
    assert not {"sdlens.cli.typer_app", "sdlens.cli.eval", "sdlens.cli.train", "sdlens.experiments"} & mods


def test_top_level_help_is_the_typer_apps_table() -> None:
    """The typer app registers exactly the table's commands, in its order and with its help, and `sdlens --help`
    shows each command's whole first paragraph: what typer's rich help would list."""
    import typer.main

    from sdlens.cli.commands import APP_HELP, COMMAND_HELP
    from sdlens.cli.typer_app import app

    group = typer.main.get_command(app)
    assert group.help == APP_HELP
    assert list(group.commands) == list(COMMAND_HELP)
    assert {name: cmd.help for name, cmd in group.commands.items()} == COMMAND_HELP

    res = subprocess.run(
        [sys.executable, "-m", "sdlens.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert res.returncode == 0 and res.stderr == ""
    out = res.stdout
    assert out.startswith("Usage: sdlens [OPTIONS] COMMAND [ARGS]...\n")
    assert max(map(len, out.splitlines())) <= 80  # click's cap, however wide the terminal
    listed = out.split("\nCommands:\n", 1)[1].split("\n\n", 1)[0]
    names = [line.split()[0] for line in listed.splitlines() if not line.startswith("    ")]
    assert names == list(COMMAND_HELP)
    flat = " ".join(listed.split())
    for name, text in COMMAND_HELP.items():
        assert f"{name} {' '.join(text.split(chr(10) * 2)[0].split())}" in flat
    assert " ".join(APP_HELP.split()) in " ".join(out.split())


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="the deepspeed extra is not installed")
def test_deepspeeds_cpu_notice_stays_off_stdout_without_logging_at_start_up() -> None:
    """DeepSpeed prints "Setting accelerator to CPU" to stdout when imported on a machine without a GPU; imported
    after sdlens (directly or through transformers) it prints nothing, while `import sdlens` itself loads no
    logging."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}

    def stdout_of(code: str) -> str:
        return subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300, env=env
        ).stdout

    assert "Setting accelerator to CPU" in stdout_of("import deepspeed")  # the notice this guards against
    assert stdout_of("import sdlens, deepspeed") == ""
    assert stdout_of("import sdlens, transformers.integrations.deepspeed, deepspeed") == ""
    assert stdout_of("import sys, sdlens; print('logging' in sys.modules)") == "False\n"
