"""The shell examples in the README and the guides run as written."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sdlens.cli import app
from sdlens.examples import write_example_runs

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "docs" / "analyze.md"]


def _commands() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        for block in re.findall(r"```bash\n(.*?)```", doc.read_text(), flags=re.S):
            for line in block.splitlines():
                line = line.split("  #")[0].strip()
                if line.startswith("sdlens "):
                    found.append((doc.name, line))
    return found


@pytest.mark.parametrize(("doc", "command"), _commands())
def test_documented_command_runs(tmp_path, monkeypatch, doc: str, command: str) -> None:
    monkeypatch.chdir(tmp_path)
    write_example_runs(tmp_path / "out" / "demo")
    result = CliRunner().invoke(app, shlex.split(command)[1:])
    assert result.exit_code == 0, f"{doc}: {command}\n{result.output}"
    assert result.stdout.strip()


def test_there_are_documented_commands() -> None:
    assert len(_commands()) >= 6


def test_nothing_reaches_outside_the_repository() -> None:
    """The repository (and the wheel built from it) is all a user has: no file points at a sibling folder."""
    root = Path(__file__).resolve().parents[1]
    needle = "../" + "shared"  # spelled apart so that this file does not match itself
    files = [*root.joinpath("src").rglob("*"), *root.joinpath("tests").rglob("*"), *root.joinpath("docs").rglob("*")]
    files += [
        *root.joinpath(".ci").rglob("*"),
        *root.joinpath("configs").rglob("*"),
        *root.joinpath("bench").rglob("*"),
    ]
    files += [root / "README.md", root / "Makefile", root / "pyproject.toml"]
    offenders = []
    for f in files:
        if f.is_file() and f.suffix not in (".so", ".parquet", ".pyc"):
            text = f.read_text(encoding="utf-8", errors="replace")
            if needle in text:
                offenders.append(str(f.relative_to(root)))
    assert offenders == []
