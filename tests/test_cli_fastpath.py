"""`sdlens analyze` without typer (sdlens.cli.fastpath) behaves as the typer command: the same options, values,
output bytes, errors and exit codes; what its parser does not take goes to typer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from conftest import write_lines
from sdlens.cli import app
from sdlens.cli.fastpath import ANALYZE_OPTIONS, NotForFastPath, analyze_parser, parse_analyze

# the typer app run directly, skipping sdlens.cli.main's hand-over to the fast path
TYPER = [sys.executable, "-c", "from sdlens.cli.typer_app import app; app()"]
FAST = [sys.executable, "-m", "sdlens.cli"]


def _env(**extra: str) -> dict[str, str]:
    """Deterministic output: no forced colours or terminal, fixed width."""
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "NO_COLOR")}
    return {**env, "COLUMNS": "120", **extra}


def _run(prefix: list[str], *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, *args], capture_output=True, env=_env(**env), timeout=120)


@pytest.fixture(scope="module")
def traces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A paper-format eval file (hedges, non-ASCII, a case-folding character, a problem without responses)."""
    rows = [
        {"idx": 0, "generated_responses": ["Wait, hmm. Maybe 3.", "İ think \u212a is likely; unlikely"]},
        {"idx": 1, "generated_responses": ["<think>perhaps</think> The answer is \\boxed{4}.", "no hedge", "ſeems"]},
        {"idx": 2, "generated_responses": []},
        {"idx": 3, "generated_responses": ["Actually, let me check. Alternatively it might be 5.\n\\boxed{5}"]},
    ]
    return write_lines(tmp_path_factory.mktemp("fast") / "run.jsonl", [json.dumps(r) for r in rows])


def _click_analyze() -> Any:
    return typer.main.get_command(app).commands["analyze"]


def test_both_parsers_declare_the_same_options() -> None:
    """Flags, defaults and help of every option equal in the typer command and the argparse parser."""
    click_opts = {p.name: p for p in _click_analyze().params if p.param_type_name == "option"}
    actions = {a.dest: a for a in analyze_parser()._actions if a.option_strings}
    assert set(click_opts) - {"help"} == set(actions) == {o.name for o in ANALYZE_OPTIONS}
    for name, action in actions.items():
        param = click_opts[name]
        assert sorted(param.opts + param.secondary_opts) == sorted(action.option_strings), name
        assert param.help == action.help, name
        assert param.default == action.default, name
        assert param.is_flag == (action.nargs == 0), name


ARGVS = [
    ["run.jsonl"],
    ["run.jsonl", "--json"],
    ["--json", "a.jsonl", "b.jsonl", "--by", "file"],
    ["run.jsonl", "-f", "paper-eval", "-l", "words", "--scope", "thinking", "--skip-bad"],
    ["run.jsonl", "--format=generic", "--text-key", "response", "--id-key=pid", "--group-key", "g", "--correct-key=c"],
    ["run.jsonl", "--measures", "reflection,revisions", "--reflection-lexicon", "family", "--fork-entropy", "0.5"],
    ["run.jsonl", "--judge-model", "m", "--judge-backend", "openai", "--judge-base-url", "http://x", "--judge-cache=c"],
    ["run.jsonl", "--lexicon", "a", "--lexicon", "b", "--fork-entropy=-1e-3", "--tokenizer", "tok"],
]


@pytest.mark.parametrize("argv", ARGVS, ids=[" ".join(a) for a in ARGVS])
def test_both_parsers_give_the_command_the_same_values(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict[str, Any]] = []
    monkeypatch.setattr("sdlens.cli.analyze.run_analyze", lambda **kw: seen.append(kw))
    result = CliRunner().invoke(app, ["analyze", *argv])
    assert result.exit_code == 0, result.output
    fast = parse_analyze(argv)
    assert fast == seen[0]
    assert [type(v) for v in fast.values()] == [type(v) for v in seen[0].values()]


LEFT_TO_TYPER = [
    ["--help"],
    ["run.jsonl", "--help"],
    [],
    ["run.jsonl", "--scope", "bogus"],
    ["run.jsonl", "--no-such-option"],
    ["run.jsonl", "--js"],  # argparse would take an abbreviation; click does not
    ["run.jsonl", "--json=1"],
    ["run.jsonl", "--text-key", "-x"],  # click takes "-x" as the value; argparse does not
    ["run.jsonl", "--fork-entropy", "many"],
    ["run.jsonl", "--", "-odd.jsonl"],
    ["run.jsonl", "-5"],  # argparse reads a negative number as a file; click as an unknown option
    ["run.jsonl", "--json", "more.jsonl"],  # argparse takes no file after an option; click does
]


@pytest.mark.parametrize("argv", LEFT_TO_TYPER, ids=[" ".join(a) or "no-args" for a in LEFT_TO_TYPER])
def test_what_the_fast_parser_does_not_take_goes_to_typer(argv: list[str]) -> None:
    with pytest.raises(NotForFastPath):
        parse_analyze(argv)


def test_same_json_bytes_and_tables_as_the_typer_command(traces: Path, tmp_path: Path) -> None:
    other = write_lines(tmp_path / "other.jsonl", [json.dumps({"response": "hmm wait", "id": "p"})])
    for args in (
        [str(traces), "--json"],
        [str(traces), "--json", "--measures", "reflection,revisions", "--scope", "thinking"],
        [str(traces), str(other), "--by", "file", "--json", "--lexicon", "words"],
        [str(traces)],  # rich tables
    ):
        fast, slow = _run(FAST, "analyze", *args), _run(TYPER, "analyze", *args)
        assert fast.returncode == slow.returncode == 0, (fast.stderr, slow.stderr)
        assert fast.stdout == slow.stdout and fast.stderr == slow.stderr, args
        assert fast.stdout.strip()
    got = json.loads(_run(FAST, "analyze", str(traces), "--json").stdout)
    assert got["n_problems"] == 4 and got["n_responses"] == 6 and got["per_word"]["wait"]["total"] == 1


def test_same_one_line_error_and_exit_code_on_a_bad_file(tmp_path: Path) -> None:
    bad = write_lines(tmp_path / "bad.jsonl", ['{"generated_responses": ["wait"]}', '{"generated_responses": [oops'])
    missing = tmp_path / "missing.jsonl"
    for args in ([str(bad), "--json"], [str(missing), "--json"], [str(bad), "--lexicon", "no/such.toml", "--json"]):
        fast, slow = _run(FAST, "analyze", *args), _run(TYPER, "analyze", *args)
        assert fast.returncode == slow.returncode == 2, args
        assert fast.stdout == slow.stdout == b""
        assert fast.stderr == slow.stderr and fast.stderr.startswith(b"error: ") and fast.stderr.count(b"\n") == 1
    assert f"{bad}:2".encode() in _run(FAST, "analyze", str(bad), "--json").stderr


def test_bad_options_and_help_are_typers(traces: Path) -> None:
    res = _run(FAST, "analyze", str(traces), "--scope", "bogus", "--json")
    assert res.returncode == 2 and b"Invalid value for '--scope'" in res.stderr
    res = _run(FAST, "analyze", str(traces), "--js")
    assert res.returncode == 2 and b"No such option: --js" in res.stderr
    res = _run(FAST, "analyze", "--help")
    assert res.returncode == 0 and b"--judge-cache" in res.stdout and b"--json" in res.stdout


def test_progress_bar_path_gives_the_same_json(traces: Path) -> None:
    """With stderr taken for a terminal (FORCE_COLOR), the command counts under rich's progress bar."""
    fast = _run(FAST, "analyze", str(traces), "--json", FORCE_COLOR="1")
    slow = _run(TYPER, "analyze", str(traces), "--json", FORCE_COLOR="1")
    assert fast.returncode == slow.returncode == 0
    assert fast.stdout == slow.stdout == _run(FAST, "analyze", str(traces), "--json").stdout


def test_a_reader_that_went_away_ends_as_with_typer(traces: Path) -> None:
    """stdout's reader closed (`| head`): status 1, no traceback, on both paths."""
    results = []
    for prefix in (FAST, TYPER):
        read_end, write_end = os.pipe()
        os.close(read_end)  # nobody reads: the first write fails with EPIPE
        try:
            proc = subprocess.run(
                [*prefix, "analyze", str(traces), "--json"], stdout=write_end, stderr=subprocess.PIPE, env=_env()
            )
        finally:
            os.close(write_end)
        results.append((proc.returncode, proc.stderr))
    assert results[0] == results[1] == (1, b"")
