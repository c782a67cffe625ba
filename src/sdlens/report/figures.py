"""Matplotlib figures for the reports, returned as PNG bytes (the HTML embeds them, the Markdown links them)."""

from __future__ import annotations

import io
from typing import Any

__all__ = ["bar_panels", "curve_panels", "grouped_bars", "histogram"]

_COLORS = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C"]


def _plt():
    try:
        import matplotlib
    except ImportError:
        raise RuntimeError("report figures need matplotlib: pip install 'sdlens[report]'") from None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def _err(est: dict[str, Any] | None) -> tuple[float, float, float]:
    """value, lower and upper error-bar lengths (0 without a CI)."""
    if not est or est.get("value") is None:
        return float("nan"), 0.0, 0.0
    v = float(est["value"])
    ci = est.get("ci")
    if not ci or ci[0] is None:
        return v, 0.0, 0.0
    return v, max(0.0, v - ci[0]), max(0.0, ci[1] - v)


def bar_panels(labels: list[str], panels: dict[str, list[dict[str, Any] | None]]) -> bytes:
    """One bar chart per panel (title -> one estimate per label), 95% CIs as error bars."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.0), squeeze=False)
    for ax, (title, ests) in zip(axes[0], panels.items(), strict=True):
        vals = [_err(e) for e in ests]
        ax.bar(
            range(len(labels)),
            [v[0] for v in vals],
            yerr=[[v[1] for v in vals], [v[2] for v in vals]],
            color=_COLORS[: len(labels)],
            capsize=3,
        )
        ax.set_xticks(range(len(labels)), labels, rotation=20)
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return _png(fig)


def grouped_bars(groups: list[str], series: dict[str, list[dict[str, Any] | None]], title: str, ylabel: str) -> bytes:
    """Bars grouped by ``groups`` (e.g. benchmarks), one colour per series (e.g. model), CIs as error bars."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(4.0, 1.6 * len(groups) * max(1, len(series)) / 2), 3.2))
    width = 0.8 / max(1, len(series))
    for k, (name, ests) in enumerate(series.items()):
        vals = [_err(e) for e in ests]
        xs = [g + (k - (len(series) - 1) / 2) * width for g in range(len(groups))]
        ax.bar(
            xs,
            [v[0] for v in vals],
            width,
            yerr=[[v[1] for v in vals], [v[2] for v in vals]],
            label=name,
            color=_COLORS[k % len(_COLORS)],
            capsize=3,
        )
    ax.set_xticks(range(len(groups)), groups)
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def curve_panels(panels: dict[str, dict[str, tuple[list[int], list[dict[str, Any] | None]]]]) -> bytes:
    """Line charts over training steps: panel title -> {line label: (steps, estimates)}, CIs as bands."""
    from matplotlib.ticker import MaxNLocator

    plt = _plt()
    n = len(panels)
    cols = 2 if n > 1 else 1
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5.0 * cols, 3.2 * rows), squeeze=False)
    styles = ["-", "--", ":", "-."]
    for ax, (title, lines) in zip(axes.flat, panels.items(), strict=False):
        for k, (label, (steps, ests)) in enumerate(lines.items()):
            vals = [_err(e) for e in ests]
            ys = [v[0] for v in vals]
            color = _COLORS[k % len(_COLORS)]
            ax.plot(steps, ys, styles[(k // len(_COLORS)) % 4], marker="o", ms=3, label=label, color=color)
            lo = [y - v[1] for y, v in zip(ys, vals, strict=True)]
            hi = [y + v[2] for y, v in zip(ys, vals, strict=True)]
            ax.fill_between(steps, lo, hi, color=color, alpha=0.12)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("training step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.tight_layout()
    return _png(fig)


def histogram(values: list[float], title: str, xlabel: str) -> bytes:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.5, 3.0))
    ax.hist(values, bins=min(30, max(5, len(set(values)))), color=_COLORS[0])
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("responses")
    fig.tight_layout()
    return _png(fig)
