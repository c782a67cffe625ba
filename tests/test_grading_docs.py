"""docs/grading.md runs as written: its sample file, every `sdlens` command, every Python block, its numbers."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sdlens.cli import app
from sdlens.grading.base import _REGISTRY

DOC = Path(__file__).resolve().parents[1] / "docs" / "grading.md"
TEXT = DOC.read_text()


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", TEXT, flags=re.S)


def _commands() -> list[str]:
    lines = [line.split("  #")[0].strip() for block in _blocks("bash") for line in block.splitlines()]
    return [line for line in lines if line.startswith("sdlens ")]


def test_documented_commands_run_in_order(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (samples,) = _blocks("jsonl")
    Path("samples.jsonl").write_text(samples)
    commands = _commands()
    assert len(commands) >= 5
    outputs = {}
    for command in commands:
        result = CliRunner().invoke(app, shlex.split(command)[1:])
        assert result.exit_code == 0, f"{command}\n{result.output}"
        assert result.stdout.strip()
        outputs[command] = result.stdout
    first = " ".join(outputs[commands[0]].split())
    assert (
        "graded 8 answers with math-verify: 4 correct (50.0%), 2 without an extracted answer, 0 with a grade_error"
        in first
    )
    graded = [json.loads(line) for line in Path("graded.jsonl").read_text().splitlines()]
    assert [g["correct"] for g in graded] == [True, True, False, False, True, False, True, False]
    metrics = json.loads(outputs["sdlens metrics graded.jsonl --json"])["metrics"]
    assert metrics["avg@n"]["value"] == 0.5 and metrics["any-correct@n"]["value"] == 1.0
    assert round(100 * metrics["pass@2"]["value"], 1) == 83.3
    audit = " ".join(outputs["sdlens graders audit samples.jsonl"].split())
    assert "agree on 7/8" in audit and "Negative control PASSED" in audit


@pytest.mark.parametrize("block", range(len(_blocks("python"))))
def test_documented_python_runs(block: int) -> None:
    try:
        exec(compile(_blocks("python")[block], f"{DOC.name}:python-{block}", "exec"), {})
    finally:
        _REGISTRY.pop("exact", None)
