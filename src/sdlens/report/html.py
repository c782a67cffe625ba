"""Render report blocks as one self-contained HTML page: inline CSS, figures as data: URIs, no scripts, no links.

The page can be mailed or attached as it is: nothing in it refers to another file or to the network.
"""

from __future__ import annotations

import base64
import html
import re

from sdlens.report.blocks import Block, Excerpt, Figure, Heading, Pair, Para, Table

__all__ = ["excerpt_text", "hedge_pattern", "render_html"]

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


def hedge_pattern(words: tuple[str, ...], mode: str) -> re.Pattern[str] | None:
    """What to highlight: every word as a substring (the paper's counter) or as a whole word (other modes)."""
    if not words:
        return None
    alt = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    return re.compile(f"(?:{alt})" if mode == "substring" else rf"\b(?:{alt})\b", re.IGNORECASE)


def excerpt_text(text: str) -> tuple[str, int, str]:
    """``(head, characters left out, tail)`` of a long response."""
    if len(text) <= HEAD_CHARS + TAIL_CHARS + 100:
        return text, 0, ""
    return text[:HEAD_CHARS], len(text) - HEAD_CHARS - TAIL_CHARS, text[-TAIL_CHARS:]


def _highlight(text: str, pat: re.Pattern[str] | None) -> str:
    if pat is None:
        return html.escape(text)
    out, pos = [], 0
    for m in pat.finditer(text):
        out.append(html.escape(text[pos : m.start()]))
        out.append(f"<mark>{html.escape(m.group(0))}</mark>")
        pos = m.end()
    out.append(html.escape(text[pos:]))
    return "".join(out)


def _marked(text: str, spans: list[tuple[int, int]], offset: int) -> str:
    """``text`` (which starts at ``offset`` of the full response) with the given spans of the response marked."""
    out, pos = [], 0
    for start, end in _merged(spans):
        a, b = max(start - offset, pos), min(end - offset, len(text))
        if b <= a:
            continue
        out.append(html.escape(text[pos:a]))
        out.append(f"<mark>{html.escape(text[a:b])}</mark>")
        pos = b
    out.append(html.escape(text[pos:]))
    return "".join(out)


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s, e in sorted(spans):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def _excerpt(e: Excerpt, pat: re.Pattern[str] | None) -> str:
    head, cut, tail = excerpt_text(e.text)
    if e.marks is not None:
        body = _marked(head, e.marks, 0)
        if cut:
            tail_at = len(e.text) - len(tail)
            body += f'<span class="cut">\n[… {cut:,} characters left out …]\n</span>' + _marked(tail, e.marks, tail_at)
    else:
        body = _highlight(head, pat)
        if cut:
            body += f'<span class="cut">\n[… {cut:,} characters left out …]\n</span>' + _highlight(tail, pat)
    return (
        f"<div><h4>{html.escape(e.label)}</h4><p class=meta>{html.escape(e.info)}</p>"
        f'<div class="trace">{body or "<span class=cut>(empty response)</span>"}</div></div>'
    )


def _table(t: Table) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in t.header)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in t.rows)
    note = f'<p class="note">{html.escape(t.note)}</p>' if t.note else ""
    return f"<table><caption>{html.escape(t.title)}</caption><tr>{head}</tr>{rows}</table>{note}"


def _block(b: Block) -> str:
    if isinstance(b, Heading):
        return f"<h{b.level}>{html.escape(b.text)}</h{b.level}>"
    if isinstance(b, Para):
        return f"<p>{html.escape(b.text)}</p>"
    if isinstance(b, Table):
        return _table(b)
    if isinstance(b, Figure):
        data = base64.b64encode(b.png).decode()
        cap = f"<figcaption>{html.escape(b.caption)}</figcaption>" if b.caption else ""
        return (
            f"<figure><h3>{html.escape(b.title)}</h3>"
            f'<img src="data:image/png;base64,{data}" alt="{html.escape(b.title)}">{cap}</figure>'
        )
    if isinstance(b, Excerpt):
        return _excerpt(b, None)
    if isinstance(b, Pair):
        pat = hedge_pattern(b.words, b.mode)
        return (
            f"<h3>{html.escape(b.title)}</h3><p class=note>hedge words highlighted</p>"
            f'<div class="pair">{_excerpt(b.left, pat)}{_excerpt(b.right, pat)}</div>'
        )
    raise TypeError(f"unknown block {type(b).__name__}")


def render_html(title: str, blocks: list[Block], footer: str = "") -> str:
    body = "\n".join(_block(b) for b in blocks)
    foot = f'<p class="note">{html.escape(footer)}</p>' if footer else ""
    return (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>\n"
        f"<body><h1>{html.escape(title)}</h1>\n{body}\n{foot}</body></html>\n"
    )
