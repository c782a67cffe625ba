"""Reports for plain trace files (anything ``sdlens analyze`` reads), alone or two side by side.

``sdlens report run.jsonl`` writes ``report.html`` / ``report.md``: the headline numbers with bootstrap 95% CIs over
problems, per-word bars with CIs, where in the response the hedges fall, the behaviour measures, and excerpts with
the hedges highlighted exactly where the counter counted them (the lexicon's own matching rule, in the chosen
scope). ``sdlens compare A B --html OUT`` writes the same side by side, with the ratio B/A and paired excerpts.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from sdlens.epistemic.analyze import AnalyzeConfig, run_analysis
from sdlens.epistemic.compare import bootstrap_run
from sdlens.epistemic.count import count_texts
from sdlens.epistemic.lexicon import Lexicon, load_lexicon
from sdlens.epistemic.segment import Scope
from sdlens.epistemic.tokens import counted_spans
from sdlens.io import iter_samples
from sdlens.report.blocks import Block, Excerpt, Figure, Heading, Pair, Para, Table, fmt
from sdlens.report.html import render_html
from sdlens.report.markdown import render_markdown
from sdlens.runfolder import atomic_path
from sdlens.schema import Sample

__all__ = ["trace_report_blocks", "write_comparison_report", "write_trace_report"]

MAX_EXCERPT_SAMPLES = 5000  # responses read (in file order) to choose excerpts from


def _ci(est: dict[str, Any], digits: int = 2) -> str:
    v, ci = est.get("value"), est.get("ci") or [None, None]
    return fmt(v, digits) if ci[0] is None else f"{fmt(v, digits)} [{fmt(ci[0], digits)}, {fmt(ci[1], digits)}]"


def _samples(paths: Sequence[Path], config: AnalyzeConfig) -> Iterator[Sample]:
    n = 0
    for path in paths:
        for s in iter_samples(path, config.fmt, keys=config.keys):
            yield s
            n += 1
            if n >= MAX_EXCERPT_SAMPLES:
                return


def _info(s: Sample, hedges: int) -> str:
    parts = [f"problem {s.problem_id}", f"sample {s.index}", f"{hedges} hedge(s) counted"]
    if s.correct is not None:
        parts.append("correct" if s.correct else "wrong")
    return ", ".join(parts)


def _figures(prefix: str, words: list[str], series: dict[str, list[dict[str, Any]]], profiles: dict[str, list]):
    from sdlens.report.figures import grouped_bars

    blocks: list[Block] = [
        Figure(
            "Each word, per response (95% CI over problems)",
            grouped_bars(words, series, "hedges per response", "per response"),
            f"{prefix}per_word",
        )
    ]
    tenths = [f"{10 * k}-{10 * (k + 1)}%" for k in range(10)]
    blocks.append(
        Figure(
            "Where in the response the hedges fall",
            grouped_bars(
                tenths,
                {name: [{"value": v} for v in prof] for name, prof in profiles.items()},
                "share of hedges by position",
                "share",
            ),
            f"{prefix}position",
            "Share of all counted hedges that start in each tenth of the (scoped) response.",
        )
    )
    return blocks


def _measure_rows(measures: dict[str, Any]) -> list[list[str]]:
    return [[m, stat, _ci(est, 3)] for m, block in measures.items() for stat, est in block.items()]


def trace_report_blocks(
    paths: Sequence[str | Path], config: AnalyzeConfig, *, n_boot: int = 2000, seed: int = 0, n_excerpts: int = 3
) -> tuple[str, list[Block]]:
    """Title and blocks of the report of one set of trace files."""
    paths = [Path(p) for p in paths]
    run = run_analysis(paths, config)
    res = run.result()
    cis = bootstrap_run(run, n_boot=n_boot, seed=seed)
    lexicon, scope = run.lexicon, run.scope
    unit = res["length_unit"]
    blocks: list[Block] = [
        Heading("Epistemic verbalization"),
        Para(
            f"Files: {', '.join(res['files'])}. Lexicon '{res['lexicon']}' ({res['lexicon_mode']}), scope "
            f"{res['scope']}, lengths in {unit}. CIs: bootstrap over problems, {n_boot} resamples."
        ),
    ]
    m = cis["metrics"]
    rows = [
        ["problems", fmt(res["n_problems"])],
        ["responses", fmt(res["n_responses"])],
        ["E = hedges per response (paper)", _ci(m["mean_per_response"])],
        [f"hedges per 1k {unit}", _ci(m["per_1k"])],
        ["share of responses with any hedge", _ci(m["share_with_any"], 3)],
        [
            "median / p90 hedges per response",
            f"{fmt(res['median_per_response'], 1)} / {fmt(res['p90_per_response'], 1)}",
        ],
        [f"mean length ({unit})", _ci(m["mean_length"], 1)],
    ]
    if res.get("skipped_records"):
        rows.append(["skipped bad records", fmt(res["skipped_records"])])
    blocks.append(Table("Headline (95% CI)", ["measure", "value"], rows))
    words = list(cis["per_word"])
    blocks += _figures(
        "", words, {"this run": [cis["per_word"][w] for w in words]}, {"this run": res["position_profile"]}
    )
    blocks.append(
        Table(
            "Per word",
            ["word", "total", "per response (95% CI)"],
            [[w, fmt(res["per_word"][w]["total"]), _ci(cis["per_word"][w], 3)] for w in words],
        )
    )
    if res.get("groups"):
        blocks.append(
            Table(
                f"By {res['by']}",
                ["group", "problems", "responses", "E / response", f"per 1k {unit}", "share any"],
                [
                    [
                        g,
                        fmt(d["n_problems"]),
                        fmt(d["n_responses"]),
                        fmt(d["mean_per_response"]),
                        fmt(d["per_1k_tokens"]),
                        fmt(d["share_with_any"], 3),
                    ]
                    for g, d in res["groups"].items()
                ],
            )
        )
    if cis.get("measures"):
        blocks.append(Heading("Behaviour measures", 3))
        blocks.append(
            Table("Behaviour measures (95% CI)", ["measure", "statistic", "value"], _measure_rows(cis["measures"]))
        )
    blocks += _excerpt_blocks(list(_samples(paths, config)), lexicon, scope, n_excerpts)
    return f"sdlens report: {', '.join(p.name for p in paths)}", blocks


def measures_block(
    paths: Sequence[str | Path], measures: Sequence[str] = ("reflection", "revisions"), *, n_boot: int = 1000
) -> Table | None:
    """The behaviour measures of trace files as one table with 95% CIs over problems (for run reports)."""
    run = run_analysis([Path(p) for p in paths], AnalyzeConfig(measures=tuple(measures)))
    cis = bootstrap_run(run, n_boot=n_boot)
    if not cis.get("measures"):
        return None
    return Table("Behaviour measures (95% CI)", ["measure", "statistic", "value"], _measure_rows(cis["measures"]))


def _excerpt_blocks(samples: list[Sample], lexicon: Lexicon, scope: Scope, n: int) -> list[Block]:
    if not samples or n <= 0:
        return []
    totals = count_texts([s.response for s in samples], lexicon, scope).totals
    order = sorted(range(len(samples)), key=lambda i: (-int(totals[i]), i))
    chosen = [order[0], order[len(order) // 2], order[-1]][:n]
    blocks: list[Block] = [
        Heading("Excerpts", 3),
        Para("The most hedged response, a median one and the least hedged; hedges highlighted where counted."),
    ]
    for k, i in enumerate(dict.fromkeys(chosen)):
        s = samples[i]
        label = ("most hedged", "median", "least hedged")[k] if len(samples) > 2 else f"response {k + 1}"
        blocks.append(Excerpt(label, s.response, _info(s, int(totals[i])), counted_spans(s.response, lexicon, scope)))
    return blocks


def _write(title: str, blocks: list[Block], out_html: Path, source: str) -> Path:
    footer = f"Generated by sdlens on {time.strftime('%Y-%m-%d %H:%M:%S %Z')} from {source}."
    out_html.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_html) as tmp:
        tmp.write_text(render_html(title, blocks, footer), encoding="utf-8")
    md_path = out_html.with_suffix(".md")
    md = render_markdown(title, blocks, out_html.parent / f"{out_html.stem}_files", footer)
    with atomic_path(md_path) as tmp:
        tmp.write_text(md, encoding="utf-8")
    return out_html


def write_trace_report(paths: Sequence[str | Path], config: AnalyzeConfig, out: Path, **kwargs: Any) -> Path:
    """Write ``out/report.html`` and ``out/report.md`` (+ ``out/report_files/``) for trace files."""
    title, blocks = trace_report_blocks(paths, config, **kwargs)
    return _write(title, blocks, Path(out) / "report.html", ", ".join(str(Path(p).resolve()) for p in paths))


def write_comparison_report(
    a: Sequence[str | Path], b: Sequence[str | Path], config: AnalyzeConfig, res: dict[str, Any], out_html: Path
) -> Path:
    """The side-by-side report of ``sdlens compare`` (``res`` is its result) as ``out_html`` (+ a ``.md``)."""
    lexicon, scope = load_lexicon(config.lexicon), Scope(config.scope)
    unit = res["length_unit"]
    label_a, label_b = ", ".join(Path(p).name for p in a), ", ".join(Path(p).name for p in b)
    blocks: list[Block] = [
        Heading("A vs B"),
        Para(
            f"A: {label_a} ({fmt(res['a']['n_problems'])} problems, {fmt(res['a']['n_responses'])} responses). "
            f"B: {label_b} ({fmt(res['b']['n_problems'])} problems, {fmt(res['b']['n_responses'])} responses). "
            f"Lexicon '{res['lexicon']}', scope {res['scope']}, lengths in {unit}; "
            f"{'paired' if res['paired'] else 'unpaired'} bootstrap over problems, {res['n_boot']} resamples."
        ),
        Para(res["verdict"]),
    ]
    names = {
        "mean_per_response": "E / response",
        "per_1k": f"hedges per 1k {unit}",
        "share_with_any": "share with any hedge",
        "mean_length": f"length ({unit})",
    }

    def est(v: Any, ci: Any) -> dict[str, Any]:
        return {"value": v, "ci": ci}

    rows = [
        [
            label,
            _ci(est(res["metrics"][k]["a"], res["metrics"][k]["a_ci"])),
            _ci(est(res["metrics"][k]["b"], res["metrics"][k]["b_ci"])),
            _ci(est(res["metrics"][k]["ratio"], res["metrics"][k]["ratio_ci"])),
        ]
        for k, label in names.items()
    ]
    blocks.append(Table("Headline (95% CI)", ["measure", "A", "B", "B/A"], rows))
    words = list(res["per_word"])
    pw = res["per_word"]
    series = {
        "A": [est(pw[w]["a"], pw[w]["a_ci"]) for w in words],
        "B": [est(pw[w]["b"], pw[w]["b_ci"]) for w in words],
    }
    blocks += _figures("cmp_", words, series, {"A": res["a"]["position_profile"], "B": res["b"]["position_profile"]})
    blocks.append(
        Table(
            "Per word, per response (95% CI)",
            ["word", "A", "B", "B/A"],
            [
                [
                    w,
                    _ci(est(pw[w]["a"], pw[w]["a_ci"]), 3),
                    _ci(est(pw[w]["b"], pw[w]["b_ci"]), 3),
                    _ci(est(pw[w]["ratio"], pw[w]["ratio_ci"])),
                ]
                for w in words
            ],
        )
    )
    if res.get("measures"):
        blocks.append(Heading("Behaviour measures", 3))
        rows = [
            [
                measure,
                stat,
                _ci(est(m["a"], m["a_ci"]), 3),
                _ci(est(m["b"], m["b_ci"]), 3),
                _ci(est(m["difference"], m["difference_ci"]), 3),
            ]
            for measure, block in res["measures"].items()
            for stat, m in block.items()
        ]
        blocks.append(Table("Behaviour measures (95% CI)", ["measure", "statistic", "A", "B", "B - A"], rows))
    blocks += _pairs(
        list(_samples([Path(p) for p in a], config)), list(_samples([Path(p) for p in b], config)), lexicon, scope
    )
    title = f"sdlens compare: {label_a} vs {label_b}"
    source = f"A = {', '.join(str(Path(p).resolve()) for p in a)}; B = {', '.join(str(Path(p).resolve()) for p in b)}"
    return _write(title, blocks, Path(out_html), source)


def _pairs(a: list[Sample], b: list[Sample], lexicon: Lexicon, scope: Scope, n: int = 3) -> list[Block]:
    """Up to ``n`` problems present in both runs, first response of each, where the hedge counts differ most."""
    first_a: dict[str, Sample] = {}
    first_b: dict[str, Sample] = {}
    for s in a:
        first_a.setdefault(s.problem_id, s)
    for s in b:
        first_b.setdefault(s.problem_id, s)
    common = [k for k in first_a if k in first_b]
    if not common:
        return []
    ta = count_texts([first_a[k].response for k in common], lexicon, scope).totals
    tb = count_texts([first_b[k].response for k in common], lexicon, scope).totals
    order = sorted(range(len(common)), key=lambda i: (-abs(int(ta[i]) - int(tb[i])), i))[:n]
    blocks: list[Block] = [Heading("The same problems, A and B", 3)]
    for i in order:
        sa, sb = first_a[common[i]], first_b[common[i]]
        blocks.append(
            Pair(
                f"Problem {common[i]}",
                Excerpt("A", sa.response, _info(sa, int(ta[i])), counted_spans(sa.response, lexicon, scope)),
                Excerpt("B", sb.response, _info(sb, int(tb[i])), counted_spans(sb.response, lexicon, scope)),
            )
        )
    return blocks
