"""Render report blocks as one self-contained HTML page: inline CSS, figures as data: URIs, no scripts, no links.

The page can be mailed or attached as it is: nothing in it refers to another file or to the network. The page is
the jinja2 template ``templates/report.html.j2`` (autoescaped); this module turns blocks into what it shows.
"""

from __future__ import annotations

import base64
from typing import Any

from sdlens.report.blocks import Block, Excerpt, Figure, Heading, Pair, Para, Table

__all__ = ["excerpt_text", "render_html"]

HEAD_CHARS = 1500
TAIL_CHARS = 500

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1100px;
 color:#222;line-height:1.45;padding:0 1em}
h1{font-size:1.6em;border-bottom:2px solid #ddd;padding-bottom:.3em}h2{font-size:1.3em;margin-top:2em}
h3{font-size:1.05em;margin-top:1.5em}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.9em}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#f3f3f3}
caption{caption-side:top;text-align:left;font-weight:600;padding:.3em 0}
.note{color:#666;font-size:.85em}figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}
figcaption{color:#555;font-size:.85em}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:1em;margin:.5em 0 1.5em}
.trace{background:#fafafa;border:1px solid #e4e4e4;padding:.6em;font-family:ui-monospace,Menlo,Consolas,monospace;
 font-size:.78em;white-space:pre-wrap;word-break:break-word;max-height:28em;overflow:auto}
.trace mark{background:#ffe066;padding:0 1px}.cut{color:#999;font-style:italic}
.meta{color:#555;font-size:.85em;margin:.2em 0}
"""


def excerpt_text(text: str) -> tuple[str, int, str]:
    """``(head, characters left out, tail)`` of a long response."""
    if len(text) <= HEAD_CHARS + TAIL_CHARS + 100:
        return text, 0, ""
    return text[:HEAD_CHARS], len(text) - HEAD_CHARS - TAIL_CHARS, text[-TAIL_CHARS:]


def _segments(text: str, spans: list[tuple[int, int]], offset: int) -> list[tuple[str, bool]]:
    """``text`` (which starts at ``offset`` of the full response) cut into ``(piece, highlighted)`` by the spans."""
    out: list[tuple[str, bool]] = []
    pos = 0
    for start, end in _merged(spans):
        a, b = max(start - offset, pos), min(end - offset, len(text))
        if b <= a:
            continue
        out += [(text[pos:a], False), (text[a:b], True)]
        pos = b
    out.append((text[pos:], False))
    return [(piece, marked) for piece, marked in out if piece]


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s, e in sorted(spans):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def _excerpt(e: Excerpt) -> dict[str, Any]:
    head, cut, tail = excerpt_text(e.text)
    return {
        "label": e.label,
        "info": e.info,
        "head": _segments(head, e.marks, 0),
        "cut": cut,
        "tail": _segments(tail, e.marks, len(e.text) - len(tail)) if cut else [],
    }


def _view(b: Block) -> dict[str, Any]:
    if isinstance(b, Heading):
        return {"kind": "heading", "level": b.level, "text": b.text}
    if isinstance(b, Para):
        return {"kind": "para", "text": b.text}
    if isinstance(b, Table):
        return {"kind": "table", "title": b.title, "header": b.header, "rows": b.rows, "note": b.note}
    if isinstance(b, Figure):
        png = base64.b64encode(b.png).decode()
        return {"kind": "figure", "title": b.title, "png_b64": png, "caption": b.caption}
    if isinstance(b, Excerpt):
        return {"kind": "excerpt", "excerpt": _excerpt(b)}
    if isinstance(b, Pair):
        return {"kind": "pair", "title": b.title, "left": _excerpt(b.left), "right": _excerpt(b.right)}
    raise TypeError(f"unknown block {type(b).__name__}")


def render_html(title: str, blocks: list[Block], footer: str = "") -> str:
    import jinja2  # the report extra

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("sdlens.report", "templates"), autoescape=True, keep_trailing_newline=True
    )
    page = env.get_template("report.html.j2")
    return page.render(title=title, css=_CSS, blocks=[_view(b) for b in blocks], footer=footer)
