"""sdlens report: self-contained HTML + Markdown for experiment runs, eval folders and folders of runs; the HTML is
loaded in headless Chromium, which must decode every figure and log no error."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sdlens.report import build_report
from sdlens.report.blocks import Excerpt, Pair, fmt_ci
from sdlens.report.html import render_html
from test_experiments_helpers import shared_richer_context

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def rc_run(tmp_path_factory) -> Path:
    return shared_richer_context(tmp_path_factory)


def _self_contained(html: str) -> None:
    assert "<script" not in html.lower()
    assert not re.search(r"\b(?:href|srcset)\s*=", html, re.I)
    assert all(src.startswith("data:image/png;base64,") for src in re.findall(r'\ssrc="([^"]*)"', html))
    assert "http://" not in html and "https://" not in html and "@import" not in html


def test_richer_context_report(rc_run: Path, tmp_path):
    out = tmp_path / "rep"
    path = build_report(rc_run, out)
    html = path.read_text()
    _self_contained(html)
    summary = json.loads((rc_run / "summary.json").read_text())
    for ctx, st in summary["contexts"].items():  # Table 1 cells, as the summary says
        assert fmt_ci(st["score"]) in html and fmt_ci(st["E_per_1k"], 1) in html, ctx
    assert html.count("<img ") == 1 and "Table 1" in html
    assert html.count('class="pair"') == 3  # before / after for s, s-nothink, regen
    md = (out / "report.md").read_text()
    assert "| context | score |" in md and "(report_files/richer_context.png)" in md
    assert (out / "report_files" / "richer_context.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_folder_and_folder_of_runs(rc_run: Path, tmp_path):
    from sdlens.cli import app

    lab = tmp_path / "lab"
    shutil.copytree(rc_run, lab / "richer_context")
    shutil.copytree(rc_run / "eval" / "unguided", lab / "extra" / "base_eval")
    (lab / "summary.json").write_text(json.dumps({"seeds": 3, "richer_context": {"unguided": {"score": 0.3}}}))
    # a plain sdlens eval folder
    ev = build_report(lab / "extra" / "base_eval")
    metrics = json.loads((lab / "extra" / "base_eval" / "metrics.json").read_text())
    html = ev.read_text()
    _self_contained(html)
    assert fmt_ci(metrics["metrics"]["avg@n"], 3) in html and "Hedges per response" in html
    assert "Behaviour measures (95% CI)" in html and "share_reflective" in html  # the new measures, where they exist
    # a folder of runs: one section per run found, figures named apart in the Markdown
    res = CliRunner().invoke(app, ["report", str(lab)])
    assert res.exit_code == 0, res.output
    html = (lab / "report.html").read_text()
    _self_contained(html)
    assert "richer_context: Richer context" in html and "extra/base_eval: Evaluation" in html
    assert "<td>seeds</td>" in html and "<td>richer_context.unguided.score</td><td>0.30</td>" in html
    assert html.count("<img ") == 2
    assert len(list((lab / "report_files").glob("*.png"))) == 2
    bad = CliRunner().invoke(app, ["report", str(tmp_path / "empty")])
    assert bad.exit_code == 2 and "empty: no such file or folder" in bad.output
    (tmp_path / "empty").mkdir()
    bad = CliRunner().invoke(app, ["report", str(tmp_path / "empty")])
    assert bad.exit_code == 2 and "no experiment run" in bad.output


def test_hedges_are_highlighted_and_text_escaped(tmp_path):
    from sdlens.epistemic.lexicon import load_lexicon
    from sdlens.epistemic.tokens import counted_spans

    def lexicon(mode: str, words: list[str]):
        path = tmp_path / f"{mode}.toml"
        path.write_text(f'name = "t"\nmode = "{mode}"\nwords = {json.dumps(words)}\n')
        return load_lexicon(str(path))

    def excerpt(label, text, lex):
        return Excerpt(label, text, marks=counted_spans(text, lex))

    text = "<think>Wait, maybe x<y. Unlikely!</think> so \\boxed{2}"
    sub = lexicon("substring", ["wait", "maybe", "likely"])
    html = render_html("T", [Pair("t", excerpt("a", text, sub), excerpt("b", "plain", sub))])
    assert "<mark>Wait</mark>, <mark>maybe</mark> x&lt;y. Un<mark>likely</mark>!" in html
    assert "&lt;think&gt;" in html and "<think>" not in html
    word = lexicon("word", ["likely"])
    words = render_html("T", [Pair("t", excerpt("a", text, word), excerpt("b", "", word))])
    assert "<mark>" not in words  # whole-word mode: "Unlikely" is not "likely"
    wait = lexicon("substring", ["wait"])
    long = render_html("T", [Pair("t", excerpt("a", "wait " * 2000, wait), excerpt("b", "x", wait))])
    assert "characters left out" in long and long.count("<mark>") < 2000


def _chromium_check(page: Path, tmp_path: Path) -> tuple[dict, str]:
    """Load ``page`` (the report plus a probe script appended to a copy) in headless Chromium; returns the probe's
    findings and Chromium's log."""
    probe = """<script>
window.addEventListener('load', () => {
  const imgs = Array.from(document.images);
  const d = document.createElement('pre'); d.id = 'sdlens-probe';
  d.textContent = JSON.stringify({images: imgs.length,
    decoded: imgs.filter(i => i.complete && i.naturalWidth > 0 && i.naturalHeight > 0).length,
    tables: document.querySelectorAll('table').length, marks: document.querySelectorAll('mark').length});
  document.body.appendChild(d);
});
</script>"""
    copy = tmp_path / f"probe-{page.parent.name}.html"
    copy.write_text(page.read_text().replace("</body>", probe + "</body>"))
    profile = tmp_path / "chromium-profile"
    cmd = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
        "--run-all-compositor-stages-before-draw",
        "--virtual-time-budget=5000",
        "--dump-dom",
        copy.as_uri(),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    m = re.search(r'<pre id="sdlens-probe">([^<]*)</pre>', res.stdout)
    assert m, "the probe did not run: the page did not load"
    return json.loads(m.group(1).replace("&quot;", '"')), res.stderr


def _console_errors(log: str) -> list[str]:
    return [
        line
        for line in log.splitlines()
        if "CONSOLE" in line or "Failed to load resource" in line or "Uncaught" in line or "net::ERR" in line
    ]


@pytest.mark.skipif(
    not CHROMIUM.exists() and os.environ.get("SDLENS_REQUIRE_BROWSER") != "1",
    reason="Debian chromium is not installed (/usr/bin/chromium); .ci/run installs it",
)
def test_report_renders_in_headless_chromium(rc_run: Path, tmp_path):
    assert CHROMIUM.exists(), "SDLENS_REQUIRE_BROWSER=1 but /usr/bin/chromium is missing"
    out = tmp_path / "rep"
    page = build_report(rc_run, out)
    found, log = _chromium_check(page, tmp_path)
    assert found["images"] == page.read_text().count("<img ") >= 1
    assert found["decoded"] == found["images"] and found["tables"] >= 2
    assert not _console_errors(log), _console_errors(log)
    # the same check catches a broken figure and a page error
    broken = tmp_path / "broken" / "report.html"
    broken.parent.mkdir()
    html = page.read_text().replace("data:image/png;base64,", "data:image/png;base64,AAAA", 1)
    broken.write_text(html.replace("</body>", "<img src='missing.png'><script>throw new Error('boom')</script></body>"))
    bad, bad_log = _chromium_check(broken, tmp_path)
    assert bad["decoded"] == 0 and bad["images"] == 2 and "boom" in " ".join(_console_errors(bad_log))
