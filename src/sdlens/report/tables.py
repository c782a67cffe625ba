"""Rich tables for `sdlens analyze` and `sdlens compare`."""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group
from rich.table import Table


def number(x: Any, digits: int = 2) -> str:
    """A table cell: ``-`` for missing, thousands separators, ``digits`` decimals for floats."""
    if x is None:
        return "-"
    if isinstance(x, int):
        return f"{x:,}"
    return f"{x:,.{digits}f}"


_BARS = "·▁▂▃▄▅▆▇█"  # "·": no hedge in that tenth


def sparkline(values: list[float | None]) -> str:
    vals = [v or 0.0 for v in values]
    top = max(vals) if vals else 0
    if top <= 0:
        return "-"
    return "".join(_BARS[0 if v <= 0 else max(1, min(8, round(8 * v / top)))] for v in vals)


def analysis_tables(res: dict[str, Any]) -> Group:
    unit = res["length_unit"]
    head = Table(
        title=f"Epistemic verbalization — lexicon '{res['lexicon']}' ({res['lexicon_mode']}), scope {res['scope']}"
    )
    head.add_column("measure")
    head.add_column("value", justify="right")
    rows = [
        ("problems", number(res["n_problems"])),
        ("responses", number(res["n_responses"])),
        ("hedges, total", number(res["total"])),
        ("E = hedges per response (paper)", number(res["mean_per_response"])),
        ("E, mean of per-problem means", number(res["mean_per_response_macro"])),
        (f"hedges per 1k {unit}", number(res["per_1k_tokens"])),
        ("share of responses with any hedge", number(res["share_with_any"], 3)),
        (
            "median / p90 hedges per response",
            f"{number(res['median_per_response'], 1)} / {number(res['p90_per_response'], 1)}",
        ),
        (f"mean length ({unit})", number(res["mean_length"], 1)),
        ("where hedges fall (tenths of response)", sparkline(res["position_profile"])),
    ]
    if res.get("skipped_records"):
        rows.append(("skipped bad records", number(res["skipped_records"])))
    for r in rows:
        head.add_row(*r)
    words = Table(title="Per word")
    words.add_column("word")
    words.add_column("total", justify="right")
    words.add_column("per response", justify="right")
    for w, d in res["per_word"].items():
        words.add_row(w, number(d["total"]), number(d["mean_per_response"], 3))
    parts: list[Any] = [head, words]
    if res.get("groups"):
        g = Table(title=f"By {res['by']}")
        for col in (
            "group",
            "problems",
            "responses",
            "E / response",
            f"per 1k {unit}",
            "share any",
            "median",
            f"length ({unit})",
        ):
            g.add_column(col, justify="left" if col == "group" else "right")
        for name, d in res["groups"].items():
            g.add_row(
                name,
                number(d["n_problems"]),
                number(d["n_responses"]),
                number(d["mean_per_response"]),
                number(d["per_1k_tokens"]),
                number(d["share_with_any"], 3),
                number(d["median_per_response"], 1),
                number(d["mean_length"], 1),
            )
        parts.append(g)
    if res.get("measures"):
        parts.append(measures_table(res["measures"], res.get("groups")))
    return Group(*parts)


def measures_table(measures: dict[str, Any], groups: dict[str, Any] | None = None) -> Table:
    """Behaviour measures: one row per statistic, overall and per group."""
    t = Table(title="Behaviour measures")
    t.add_column("measure")
    t.add_column("statistic")
    t.add_column("all", justify="right")
    for name in groups or {}:
        t.add_column(name, justify="right")
    for measure, block in measures.items():
        for stat, value in block.items():
            if stat == "totals":
                continue
            cells = [number(value, 3)] + [number(g["measures"][measure][stat], 3) for g in (groups or {}).values()]
            t.add_row(measure, stat, *cells)
    return t


def measures_comparison_tables(measures: dict[str, Any]) -> list[Table]:
    """One table per behaviour measure: each statistic in A and B and the difference B - A, with 95% CIs."""
    tables = []
    for measure, block in measures.items():
        t = Table(title=f"Behaviour measure '{measure}', A vs B; value (95% CI)")
        t.add_column("statistic")
        for col in ("A", "B", "B - A"):
            t.add_column(col, justify="right", no_wrap=True)
        for stat, m in block.items():
            t.add_row(
                stat,
                _with_ci(m["a"], m["a_ci"], 2),
                _with_ci(m["b"], m["b_ci"], 2),
                _with_ci(m["difference"], m["difference_ci"], 2),
            )
        tables.append(t)
    return tables


def _with_ci(x: float | None, ci: list[float | None], digits: int = 2) -> str:
    return f"{number(x, digits)} ({number(ci[0], digits)}–{number(ci[1], digits)})"


def comparison_table(res: dict[str, Any]) -> Group:
    unit = res["length_unit"]
    kind = "paired" if res["paired"] else "unpaired"
    t = Table(title=f"A vs B — lexicon '{res['lexicon']}', scope {res['scope']}; value (95% CI)")
    for col in ("measure", "A", "B", "B/A"):
        t.add_column(col, justify="left" if col == "measure" else "right", no_wrap=col != "measure")
    short = "tokens" if unit.startswith("tokens") else "words"
    names = {
        "mean_per_response": "E / response",
        "per_1k": f"per 1k {short}",
        "share_with_any": "share with any",
        "mean_length": f"length ({short})",
    }
    for key, label in names.items():
        m = res["metrics"][key]
        digits = 3 if key == "share_with_any" else 2
        t.add_row(
            label,
            _with_ci(m["a"], m["a_ci"], digits),
            _with_ci(m["b"], m["b_ci"], digits),
            _with_ci(m["ratio"], m["ratio_ci"], 2),
        )
    w = Table(title="Per word, per response")
    for col in ("word", "A", "B", "B/A (95% CI)"):
        w.add_column(col, justify="left" if col == "word" else "right", no_wrap=True)
    for word, m in res["per_word"].items():
        w.add_row(word, number(m["a"], 3), number(m["b"], 3), _with_ci(m["ratio"], m["ratio_ci"], 2))
    sizes = (
        f"A: {res['a']['n_problems']:,} problems, {res['a']['n_responses']:,} responses   "
        f"B: {res['b']['n_problems']:,} problems, {res['b']['n_responses']:,} responses\n"
        f"{kind} bootstrap over problems, {res['n_boot']} resamples; length unit: {unit}"
    )
    parts: list[Any] = [sizes, t, w]
    if res.get("measures"):
        parts.extend(measures_comparison_tables(res["measures"]))
    return Group(*parts, f"[bold]{res['verdict']}[/bold]")


def print_renderable(obj: Any) -> None:
    Console().print(obj)
