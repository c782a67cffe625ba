"""The figure of ``sdlens monitor --plot``: hedge rate and length per step, with where the detector fired."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sdlens.errors import InputError
from sdlens.runfolder import atomic_path

__all__ = ["plot_run"]

_COLORS = {"warning": "tab:orange", "suppressing": "tab:red"}


def plot_run(result: dict[str, Any], out: str | Path) -> Path:
    """Write a PNG (or any matplotlib format by suffix) of :func:`sdlens.monitor.read_run`'s result."""
    try:
        import matplotlib
    except ImportError:
        raise InputError(None, "--plot needs matplotlib: pip install 'sdlens[report]'", field="plot") from None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["steps"] if r.get("hedges_per_1k_tokens") is not None]
    steps = [r["step"] for r in rows]
    fig, ax = plt.subplots(figsize=(8, 4.2))
    unit = rows[0].get("units", "tokens") if rows else "tokens"
    ax.plot(steps, [r["hedges_per_1k_tokens"] for r in rows], "o-", color="tab:blue", ms=3, label="hedges per 1k")
    ax.set_xlabel("step")
    ax.set_ylabel(f"hedges per 1k {unit}", color="tab:blue")
    ax.set_ylim(bottom=0)
    ax2 = ax.twinx()
    ax2.plot(steps, [r.get("mean_length") for r in rows], "s--", color="tab:gray", ms=3, label="mean length")
    ax2.set_ylabel(f"mean length ({unit})", color="tab:gray")
    ax2.set_ylim(bottom=0)
    for state, step in (result["verdict"].get("first_fired") or {}).items():
        if step is not None:
            ax.axvline(step, color=_COLORS.get(state, "k"), ls=":", lw=1.5, label=f"{state} from step {step}")
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="lower left", fontsize=8)
    ax.set_title(f"{Path(result['path']).name}: {result['verdict']['state']}")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=120, format=out.suffix.lstrip(".") or "png")
    plt.close(fig)
    return out
