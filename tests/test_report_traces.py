"""`sdlens report FILE` for plain trace files and `sdlens compare A B --html OUT`: content, hedges highlighted
exactly as counted, and rendering in headless Chromium like the run report."""

from __future__ import annotations

import json
import os
import random
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import write_lines
from sdlens.cli import app
from sdlens.epistemic.count import count_texts
from sdlens.epistemic.lexicon import load_lexicon
from sdlens.epistemic.tokens import counted_spans
from test_report import CHROMIUM, _chromium_check, _console_errors

pytest.importorskip("matplotlib")
runner = CliRunner()


def _run(tmp_path: Path, name: str, hedged: bool) -> Path:
    lines = []
    for i in range(6):
        if hedged:
            rs = [f"<think>Wait, maybe {i}? Hmm, let me recheck. Perhaps {i + 1}.</think>\\boxed{{{i + 1}}}"] * 2
        else:
            rs = [f"<think>{i} + 1 = {i + 1}.</think>\\boxed{{{i + 1}}}"] * 2
        lines.append(json.dumps({"idx": i, "generated_responses": rs, "answers_correctness": [True, i % 2 == 0]}))
    return write_lines(tmp_path / name, lines)


def test_counted_spans_are_the_counters_hits() -> None:
    rng = random.Random(0)
    vocab = ["wait", "Wait,", "unlikely", "hmmm", "<think>", "</think>", "checking", "x", "maybe.", "MIGHT", "ok"]
    texts = [" ".join(rng.choice(vocab) for _ in range(rng.randint(0, 30))) for _ in range(200)]
    for name in ("paper", "words", "companion"):
        lex = load_lexicon(name)
        for scope in ("full", "thinking", "answer"):
            totals = count_texts(texts, lex, scope, backend="reference").totals
            assert [len(counted_spans(t, lex, scope)) for t in texts] == totals.tolist(), (name, scope)


def test_report_for_a_plain_trace_file(tmp_path: Path) -> None:
    run = _run(tmp_path, "run.jsonl", hedged=True)
    result = runner.invoke(app, ["report", str(run)])
    assert result.exit_code == 0, result.output
    page = tmp_path / "run_report" / "report.html"
    html = page.read_text()
    assert html.count("<img ") == 2 and "Behaviour measures" in html and "share_reflective" in html
    assert "Headline (95% CI)" in html and "Excerpts" in html
    # each excerpt marks exactly its counted hedges: 5 per response here (wait, maybe, hmm, check, perhaps)
    excerpts = re.findall(r'<div class="trace">(.*?)</div>', html, re.S)
    assert excerpts and all(e.count("<mark>") == 5 for e in excerpts)
    assert "re<mark>check</mark>" in html  # the paper's substring rule, shown as it counts
    assert (tmp_path / "run_report" / "report.md").read_text().count("⟦") == 5 * len(excerpts)
    words = runner.invoke(app, ["report", str(run), "--lexicon", "words", "-o", str(tmp_path / "w")])
    assert words.exit_code == 0 and "re<mark>check" not in (tmp_path / "w" / "report.html").read_text()
    missing = runner.invoke(app, ["report", str(tmp_path / "nope.jsonl")])
    assert missing.exit_code == 2 and "nope.jsonl" in missing.output and "no such file" in missing.output


def test_compare_html_side_by_side(tmp_path: Path) -> None:
    a, b = _run(tmp_path, "a.jsonl", hedged=True), _run(tmp_path, "b.jsonl", hedged=False)
    out = tmp_path / "cmp" / "a_vs_b.html"
    result = runner.invoke(app, ["compare", str(a), str(b), "--measures", "reflection", "--html", str(out)])
    assert result.exit_code == 0, result.output
    html = out.read_text()
    assert html.count("<img ") == 2 and html.count('class="pair"') == 3 and "Hedging fell significantly" in html
    assert "share_reflective" in html and "B/A" in html
    pairs = re.findall(r'<div class="pair">(.*?)</div></div></div>', html, re.S)
    assert pairs and all(p.count("<mark>") == 5 for p in pairs)  # A's response marked, B's has none
    assert out.with_suffix(".md").exists() and (tmp_path / "cmp" / "a_vs_b_files" / "cmp_per_word.png").exists()


@pytest.mark.skipif(
    not CHROMIUM.exists() and os.environ.get("SDLENS_REQUIRE_BROWSER") != "1",
    reason="Debian chromium is not installed (/usr/bin/chromium); make browser installs it",
)
def test_trace_reports_render_in_headless_chromium(tmp_path: Path) -> None:
    a, b = _run(tmp_path, "a.jsonl", hedged=True), _run(tmp_path, "b.jsonl", hedged=False)
    assert runner.invoke(app, ["report", str(a), "-o", str(tmp_path / "one")]).exit_code == 0
    assert (
        runner.invoke(app, ["compare", str(a), str(b), "--html", str(tmp_path / "two" / "report.html")]).exit_code == 0
    )
    for page in (tmp_path / "one" / "report.html", tmp_path / "two" / "report.html"):
        found, log = _chromium_check(page, tmp_path)
        assert found["images"] == 2 and found["decoded"] == 2, found
        assert found["tables"] >= 2 and found["marks"] >= 5, found
        assert not _console_errors(log), _console_errors(log)
