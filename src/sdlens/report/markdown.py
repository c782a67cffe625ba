"""Render report blocks as Markdown; figures are written beside it (``report_files/<name>.png``)."""

from __future__ import annotations

from pathlib import Path

from sdlens.report.blocks import Block, Excerpt, Figure, Heading, Pair, Para, Table
from sdlens.report.html import excerpt_text

__all__ = ["render_markdown"]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(t: Table) -> str:
    lines = [f"**{t.title}**", "", "| " + " | ".join(_cell(h) for h in t.header) + " |"]
    lines.append("|" + "|".join([":---"] + ["---:"] * (len(t.header) - 1)) + "|")
    lines += ["| " + " | ".join(_cell(c) for c in r) + " |" for r in t.rows]
    if t.note:
        lines += ["", f"_{t.note}_"]
    return "\n".join(lines)


def _excerpt(e: Excerpt) -> str:
    # hedges between markers: code blocks cannot hold emphasis
    head, cut, tail = excerpt_text(_bracketed(e.text, e.marks))
    text = head + (f"\n[… {cut:,} characters left out …]\n" + tail if cut else "")
    fence = "~~~~" if "```" in text else "```"
    return f"*{e.label}* — {e.info}\n\n{fence}text\n{text}\n{fence}"


def _bracketed(text: str, spans: list[tuple[int, int]]) -> str:
    """``text`` with the counted spans between markers (overlapping spans merged)."""
    out, pos = [], 0
    for start, end in sorted(spans):
        if start < pos:
            start = pos
        if end <= start:
            continue
        out += [text[pos:start], "⟦", text[start:end], "⟧"]
        pos = end
    out.append(text[pos:])
    return "".join(out)


def render_markdown(title: str, blocks: list[Block], files_dir: Path, footer: str = "") -> str:
    """Markdown of the blocks; each figure's PNG is written to ``files_dir`` and linked relatively."""
    parts = [f"# {title}"]
    for b in blocks:
        if isinstance(b, Heading):
            parts.append("#" * b.level + " " + b.text)
        elif isinstance(b, Para):
            parts.append(b.text)
        elif isinstance(b, Table):
            parts.append(_table(b))
        elif isinstance(b, Figure):
            files_dir.mkdir(parents=True, exist_ok=True)
            (files_dir / f"{b.name}.png").write_bytes(b.png)
            parts.append(f"![{b.title}]({files_dir.name}/{b.name}.png)" + (f"\n\n_{b.caption}_" if b.caption else ""))
        elif isinstance(b, Excerpt):
            parts.append(_excerpt(b))
        elif isinstance(b, Pair):
            parts.append(f"### {b.title}\n\nHedge words are marked ⟦like this⟧.")
            parts.append(_excerpt(b.left))
            parts.append(_excerpt(b.right))
    if footer:
        parts.append(f"_{footer}_")
    return "\n\n".join(parts) + "\n"
