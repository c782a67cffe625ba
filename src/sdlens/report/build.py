"""``sdlens report DIR``: one self-contained ``report.html`` and a ``report.md`` for any run folder.

What a folder is, by its files:

- ``summary.json`` with ``kind`` ``richer-context`` / ``guided-sft`` / ``coverage``: an experiment run
  (:mod:`sdlens.experiments`).
- ``metrics.json`` + ``samples.jsonl`` (or ``summary.json`` with ``kind`` ``eval``): a ``sdlens eval`` folder.
- anything else (e.g. a ``sdlens lab`` run): every experiment or eval folder below it (three levels deep at most)
  gets its own section, in name order, after a table of the top ``summary.json``'s values if there is one.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from sdlens.errors import InputError
from sdlens.lab.summary import lab_tables, verdict_lines
from sdlens.report.blocks import Block, Figure, Heading, Para, Table, fmt, fmt_ci
from sdlens.report.html import render_html
from sdlens.report.markdown import render_markdown
from sdlens.report.sections import coverage_section, eval_section, guided_sft_section, richer_context_section
from sdlens.runfolder import atomic_path

__all__ = ["KINDS", "build_report", "detect_kind", "report_blocks"]

KINDS = ("richer-context", "guided-sft", "coverage", "eval")


def _summary(run: Path) -> dict[str, Any] | None:
    path = run / "summary.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise InputError(path, f"not valid JSON ({e})") from None
    return data if isinstance(data, dict) else None


def detect_kind(run: Path) -> str | None:
    """``richer-context`` / ``guided-sft`` / ``coverage`` / ``eval``, or ``None`` (a folder of runs, or nothing)."""
    s = _summary(run)
    kind = s.get("kind") if s else None
    if kind in KINDS and kind != "eval":
        return kind
    if (run / "metrics.json").is_file() and (run / "samples.jsonl").is_file():
        return "eval"
    return None


def _section(run: Path, kind: str) -> list[Block]:
    if kind == "eval":
        return eval_section(run)
    summary = _summary(run) or {}
    return {"richer-context": richer_context_section, "guided-sft": guided_sft_section, "coverage": coverage_section}[
        kind
    ](run, summary)


def _children(root: Path, depth: int = 3) -> list[tuple[Path, str]]:
    found = []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        kind = detect_kind(d)
        if kind:
            found.append((d, kind))
        elif depth > 1:
            found += _children(d, depth - 1)
    return found


def _flatten(obj: Any, prefix: str = "", depth: int = 4) -> list[tuple[str, Any]]:
    if isinstance(obj, dict) and depth > 0:
        if set(obj) >= {"value", "ci"}:  # an estimate: one cell
            return [(prefix, obj)]
        out: list[tuple[str, Any]] = []
        for k, v in obj.items():
            out += _flatten(v, f"{prefix}.{k}" if prefix else str(k), depth - 1)
        return out
    if isinstance(obj, str | int | float | bool):
        return [(prefix, obj)]
    if isinstance(obj, list) and len(obj) <= 12 and all(isinstance(x, int | float | str) for x in obj):
        return [(prefix, ", ".join(fmt(x) for x in obj))]
    return []


def _scalars(summary: dict[str, Any], limit: int = 80) -> Table | None:
    """The plain values of a folder-of-runs summary (e.g. a lab run's headline numbers), nested keys dotted."""
    rows = [[k, fmt_ci(v) if isinstance(v, dict) else fmt(v)] for k, v in _flatten(summary)][:limit]
    return Table("Run summary", ["key", "value"], rows) if rows else None


def _lab_blocks(summary: dict[str, Any]) -> list[Block]:
    """A ``sdlens lab`` run's headline: its tables (the three effects with 95% CIs, the mitigations) and verdicts."""

    seeds = summary.get("seeds") or []
    blocks: list[Block] = [
        Heading(f"The model organism: {summary.get('mode', '')} mode, {len(seeds)} seed(s)"),
        Para(
            "Means with 95% CIs (one seed: a bootstrap over problems; several: a t-interval over the seed means). "
            "Per-seed details follow in the sections below."
        ),
    ]
    blocks += [Table(title, header, rows) for title, header, rows in lab_tables(summary)]
    blocks += [Para(line) for line in verdict_lines(summary)]
    return blocks


def report_blocks(run_dir: str | Path) -> tuple[str, list[Block]]:
    """The title and blocks of a run folder's report (see the module doc)."""
    run = Path(run_dir)
    if not run.is_dir():
        raise InputError(run, "not a folder", field="run_dir")
    kind = detect_kind(run)
    if kind:
        return f"sdlens report: {run.name} ({kind})", _section(run, kind)
    blocks: list[Block] = []
    top = _summary(run)
    if top and top.get("kind") == "lab":
        blocks += _lab_blocks(top)
    elif top:
        table = _scalars(top)
        if table:
            blocks.append(table)
    children = _children(run)
    if not children and not blocks:
        raise InputError(
            run, "no experiment run (summary.json with a kind) or sdlens eval folder found", field="run_dir"
        )
    for k, (d, ck) in enumerate(children):
        section = _section(d, ck)
        if section and isinstance(section[0], Heading):
            section[0] = replace(section[0], text=f"{d.relative_to(run)}: {section[0].text}")
        # unique figure file names for the Markdown report
        blocks += [replace(b, name=f"{k}_{b.name}") if isinstance(b, Figure) else b for b in section]
    return f"sdlens report: {run.name}", blocks


def build_report(run_dir: str | Path, out: Path | None = None) -> Path:
    """Write ``report.html`` (self-contained) and ``report.md`` (+ ``report_files/``) for a run folder into
    ``out`` (default: the run folder); returns the HTML path."""
    title, blocks = report_blocks(run_dir)
    out = Path(out) if out is not None else Path(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    footer = f"Generated by sdlens on {time.strftime('%Y-%m-%d %H:%M:%S %Z')} from {Path(run_dir).resolve()}."
    html_path = out / "report.html"
    with atomic_path(html_path) as tmp:
        tmp.write_text(render_html(title, blocks, footer), encoding="utf-8")
    md = render_markdown(title, blocks, out / "report_files", footer)
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text(md, encoding="utf-8")
    return html_path
