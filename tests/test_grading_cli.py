"""`sdlens grade`, `sdlens graders audit` / `list` through the CLI, and the file-level library calls."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from sdlens.cli import app
from sdlens.grading import Verdict, get_grader, grade_samples, register_grader
from sdlens.grading.base import _REGISTRY
from sdlens.io import read_records
from sdlens.schema import Sample, write_jsonl, write_parquet

runner = CliRunner()

ROWS = [
    {"problem_id": "p1", "index": 0, "response": r"<think>hmm</think>\boxed{\frac12}", "answer": "0.5", "extra": [1]},
    {"problem_id": "p1", "index": 1, "response": r"\boxed{7}", "answer": "0.5", "extra": None},
    {"problem_id": "p2", "index": 0, "response": "no box at all", "answer": 3, "extra": {"k": "v"}},
    {"problem_id": "p2", "index": 1, "response": r"\boxed{3} then \boxed{", "answer": 3, "extra": "x"},
]
EXPECTED = [("\\frac12", True), ("7", False), (None, False), (None, False)]


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def run_ok(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def run_error(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_grade_jsonl_keeps_every_field(tmp_path) -> None:
    src = write_rows(tmp_path / "in.jsonl", ROWS)
    out = tmp_path / "out.jsonl"
    stdout = run_ok("grade", str(src), "-o", str(out))
    assert "graded 4 answers" in stdout
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(got) == len(ROWS)
    for row, g, (extracted, correct) in zip(ROWS, got, EXPECTED, strict=True):
        assert {k: g[k] for k in row} == row  # every input field, unchanged, in order
        assert (g["extracted"], g["correct"], g["grader"], g["grade_error"]) == (
            extracted,
            correct,
            "math-verify",
            None,
        )
    first = out.read_bytes()
    run_ok("grade", str(src), "-o", str(out))
    assert out.read_bytes() == first  # deterministic


def test_grade_json_summary_and_paper_grader(tmp_path) -> None:
    src = write_rows(tmp_path / "in.jsonl", ROWS)
    summary = json.loads(
        run_ok("grade", str(src), "-o", str(tmp_path / "o.jsonl"), "--grader", "paper-reward", "--json")
    )
    assert summary["grader"] == "paper-reward" and summary["n"] == 4
    assert summary["n_correct"] == 0  # raw "\frac12" does not parse under the paper's reward
    got = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert [g["extracted"] for g in got] == ["\\frac12", "7", None, ""]


def test_grade_answer_line_mode(tmp_path) -> None:
    src = write_rows(tmp_path / "in.jsonl", [{"response": "work\nAnswer: 42", "answer": "42"}])
    run_ok("grade", str(src), "-o", str(tmp_path / "o.jsonl"), "--extract", "answer-line", "--timeout", "2")
    assert json.loads((tmp_path / "o.jsonl").read_text())["correct"] is True


def test_grade_samples_parquet_roundtrip(tmp_path) -> None:
    samples = [
        Sample(problem_id="p1", index=i, response=rf"\boxed{{{i}}}", answer="1", source="s", meta={"a": i})
        for i in range(3)
    ]
    src = tmp_path / "s.parquet"
    write_parquet(src, samples)
    out = tmp_path / "g.parquet"
    run_ok("grade", str(src), "-o", str(out))
    table = pq.read_table(out)
    before = pq.read_schema(src)
    for f in before:  # the input schema is kept
        if f.name not in ("extracted", "correct", "grader"):
            assert table.schema.field(f.name).type == f.type
    assert table.column("correct").to_pylist() == [False, True, False]
    assert table.column("grade_error").to_pylist() == [None, None, None]
    graded = list(read_records(out))
    assert [s.correct for s in graded] == [False, True, False] and graded[0].meta["a"] == 0
    # Parquet in, JSONL out; JSONL in, Parquet out
    run_ok("grade", str(src), "-o", str(tmp_path / "g.jsonl"))
    assert [json.loads(x)["correct"] for x in (tmp_path / "g.jsonl").read_text().splitlines()] == [False, True, False]
    write_jsonl(tmp_path / "s.jsonl", samples)
    run_ok("grade", str(tmp_path / "s.jsonl"), "-o", str(tmp_path / "g2.parquet"))
    assert pq.read_table(tmp_path / "g2.parquet").column("correct").to_pylist() == [False, True, False]


@pytest.mark.parametrize(
    ("rows", "line", "message"),
    [
        ([{"response": "x", "answer": "1"}, {"response": "y"}], 2, "field 'answer': missing key"),
        ([{"response": "x", "answer": None}], 1, "field 'answer': null"),
        ([{"response": None, "answer": "1"}], 1, "field 'response': expected a string, got null"),
        ([{"answer": "1"}], 1, "field 'response': missing key"),
        ([{"response": "x", "answer": ["1"]}], 1, "field 'answer': expected a string or number, got list"),
    ],
)
def test_grade_bad_records(tmp_path, rows, line: int, message: str) -> None:
    src = write_rows(tmp_path / "bad.jsonl", rows)
    out = tmp_path / "out.jsonl"
    msg = run_error("grade", str(src), "-o", str(out))
    assert msg.startswith(f"error: {src}:{line}: {message}")
    assert not out.exists() and not list(tmp_path.glob(".out.jsonl*"))  # nothing half-written


def test_grade_bad_files_and_options(tmp_path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"response": "x", "answer": "1"}\n{"response": \n')
    assert run_error("grade", str(bad), "-o", str(tmp_path / "o.jsonl")).startswith(f"error: {bad}:2: malformed JSON")
    missing = tmp_path / "none.jsonl"
    assert "cannot open" in run_error("grade", str(missing), "-o", str(tmp_path / "o.jsonl"))
    assert "cannot open" in run_error("grade", str(tmp_path / "none.parquet"), "-o", str(tmp_path / "o.jsonl"))
    (tmp_path / "junk.parquet").write_text("not parquet")
    assert "Parquet" in run_error("grade", str(tmp_path / "junk.parquet"), "-o", str(tmp_path / "o.jsonl"))
    good = write_rows(tmp_path / "good.jsonl", ROWS)
    assert "unknown grader" in run_error("grade", str(good), "-o", str(tmp_path / "o.jsonl"), "-g", "nope")
    msg = run_error("grade", str(good), "-o", str(tmp_path / "o.jsonl"), "-g", "paper-reward", "--extract", "boxed")
    assert "--extract does not apply to the paper-reward grader" in msg


def test_audit_json(tmp_path) -> None:
    rows = [
        {"problem_id": "a", "response": r"\boxed{\frac12}", "answer": "0.5"},  # paper: raw parse fails
        {"problem_id": "b", "response": r"<think>\boxed{4}</think>no idea", "answer": "4"},  # paper reads thinking
        {"problem_id": "c", "response": r"\boxed{4}", "answer": "4"},
        {"problem_id": "d", "response": r"\boxed{5}", "answer": "4"},
    ]
    src = write_rows(tmp_path / "a.jsonl", rows)
    rep = json.loads(run_ok("graders", "audit", str(src), "--json"))
    assert rep["graders"] == ["math-verify", "paper-reward"]
    assert rep["accuracy"] == {"math-verify": 0.5, "paper-reward": 0.5}
    assert rep["agreement"]["math-verify"]["paper-reward"] == 0.5 and rep["n_disagree"] == 2
    assert [d["problem_id"] for d in rep["disagreements"]] == ["a", "b"]
    assert rep["disagreements"][0]["line"] == 1
    assert rep["pairs"][0]["only_a"] == 1 and rep["pairs"][0]["only_b"] == 1
    assert rep["control_passed"] is True and rep["control"]["false_positives"] == {"math-verify": 0, "paper-reward": 0}
    table = run_ok("graders", "audit", str(src))
    assert "Agreement" in table and "Negative control PASSED" in table


class _CreditsEverything:
    name = "credits-everything"

    def grade(self, items, progress=None):
        return [Verdict("x", True, None) for _ in items]


def test_audit_negative_control_catches_a_bad_grader(tmp_path) -> None:
    register_grader("credits-everything", _CreditsEverything)
    try:
        src = write_rows(tmp_path / "a.jsonl", [{"response": r"\boxed{1}", "answer": "1"}])
        result = runner.invoke(app, ["graders", "audit", str(src), "-g", "math-verify", "-g", "credits-everything"])
        assert result.exit_code == 1, result.output
        assert "Negative control FAILED" in result.stdout and "credits-everything" in result.stdout
        assert "credits-everything" in run_ok("graders", "list")
        # --workers is an option of the built-in graders only
        msg = run_error("graders", "audit", str(src), "-g", "credits-everything", "--workers", "1")
        assert "--workers does not apply" in msg
    finally:
        _REGISTRY.pop("credits-everything", None)


def test_grade_samples_library(tmp_path) -> None:
    samples = [Sample(problem_id="p", index=0, response=r"\boxed{2}", answer="2"), Sample(problem_id="p", index=1)]
    a, b = grade_samples(samples)
    assert (a.correct, a.extracted, a.grader) == (True, "2", "math-verify")
    assert b.correct is False and b.meta["grade_error"] == "no gold answer"
    assert get_grader("math-verify").grade([]) == []
