"""`sdlens metrics` reads graded traces in any format the readers know, not only sdlens Samples."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from sdlens.cli import app
from sdlens.examples import write_example_run


def test_metrics_on_the_papers_eval_format(tmp_path) -> None:
    path = write_example_run(tmp_path / "run.jsonl", hedging=0.5, accuracy=0.6, n_problems=12, n_samples=4)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    result = CliRunner().invoke(app, ["metrics", str(path), "--k", "1,4", "--json"])
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    per_problem = [sum(r["answers_correctness"]) / 4 for r in rows]
    assert got["metrics"]["avg@n"]["value"] * 100 == sum(per_problem) / len(per_problem) * 100
    any_correct = sum(any(r["answers_correctness"]) for r in rows) / len(rows)
    assert got["metrics"]["any-correct@n"]["value"] == any_correct
