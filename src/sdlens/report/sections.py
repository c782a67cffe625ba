"""Report sections: one function per run kind turns a run folder into blocks (tables, figures, excerpt pairs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sdlens.epistemic.lexicon import load_lexicon
from sdlens.epistemic.tokens import counted_spans
from sdlens.report import figures
from sdlens.report.blocks import Block, Excerpt, Figure, Heading, Pair, Para, Table, fmt, fmt_ci
from sdlens.report.traces import measures_block

__all__ = ["coverage_section", "eval_section", "guided_sft_section", "richer_context_section"]

CONTEXT_LABELS = {
    "none": "(1) unguided c=∅",
    "s": "(2) solution-guided c=s",
    "s-nothink": "(3) solution w/o think c=s\\think",
    "regen": "(4) regeneration c=ỹ",
}
MODEL_LABELS = {"base": "Base", "unguided_sft": "SFT on D_unguided", "guided_sft": "SFT on D_guided"}


def _samples(path: Path) -> list[Any]:
    from sdlens.io import read_records

    return list(read_records(path)) if path.is_file() else []


def _lexicon(name: str):
    return load_lexicon(name or "paper")


def _e(text: str, lex) -> int:
    from sdlens.epistemic import count_texts

    return int(count_texts([text], lex).totals[0])


def _excerpt(label: str, s: Any, lex) -> Excerpt:
    tokens = f"{s.n_tokens:,} tokens" if s.n_tokens is not None else f"{len(s.response):,} chars"
    verdict = {True: "correct", False: "wrong", None: "ungraded"}[s.correct]
    return Excerpt(label, s.response, f"{verdict}, {tokens}, E = {_e(s.response, lex)}", counted_spans(s.response, lex))


def _pair(title: str, a_label: str, a: list[Any], b_label: str, b: list[Any], lex) -> Pair | None:
    """The problem whose mean E changes most from ``a`` to ``b``; on each side its sample closest to that side's mean
    E for the problem (lowest index on ties), so neither side is picked for effect. The title says how it was chosen."""
    ga: dict[str, list[Any]] = {}
    gb: dict[str, list[Any]] = {}
    for s in a:
        ga.setdefault(s.problem_id, []).append(s)
    for s in b:
        gb.setdefault(s.problem_id, []).append(s)
    common = [pid for pid in ga if pid in gb]
    if not common:
        return None

    def mean_e(ss: list[Any]) -> float:
        return sum(_e(s.response, lex) for s in ss) / len(ss)

    pid = max(common, key=lambda p: (abs(mean_e(ga[p]) - mean_e(gb[p])), -common.index(p)))

    def typical(ss: list[Any]) -> Any:
        m = mean_e(ss)
        return min(ss, key=lambda s: (abs(_e(s.response, lex) - m), s.index))

    sa, sb = typical(ga[pid]), typical(gb[pid])
    return Pair(
        f"{title} — problem {pid} (largest change in mean E); on each side the sample nearest its mean E "
        f"(samples {sa.index} and {sb.index})",
        _excerpt(a_label, sa, lex),
        _excerpt(b_label, sb, lex),
    )


def _words_table(title: str, columns: dict[str, dict[str, float] | None]) -> Table | None:
    cols = {k: v for k, v in columns.items() if v}
    if not cols:
        return None
    words = list(next(iter(cols.values())))
    rows = [[w, *[fmt(c.get(w), 2) for c in cols.values()]] for w in words]
    return Table(title, ["word", *cols], rows, "mean count per response (the lexicon's matching rule)")


# ---------------------------------------------------------------- richer context (Table 1)


def richer_context_section(run: Path, summary: dict[str, Any]) -> list[Block]:
    lex = _lexicon(summary.get("lexicon", "paper"))
    sel = summary.get("selection", {})
    out: list[Block] = [
        Heading(f"Richer context (paper section 3): {summary.get('model')} on {summary.get('data')}"),
        Para(
            f"{sel.get('kept', 0)} problem(s) kept of {sel.get('scanned', 0)} scanned with "
            f"{summary['window'][0]}-{summary['window'][1]} of {summary.get('n')} unguided samples correct; "
            f"{summary.get('n')} samples per problem in every context; lexicon '{summary.get('lexicon')}'. "
            "Values are means over problems with 95% bootstrap CIs over problems."
        ),
    ]
    if summary.get("warning"):
        out.append(Para("Warning: " + summary["warning"]))
    ctxs = summary.get("contexts", {})
    if not ctxs:
        return out
    rows = []
    for ctx, st in ctxs.items():
        rows.append(
            [
                CONTEXT_LABELS.get(ctx, ctx),
                fmt_ci(st.get("score")),
                fmt_ci(st.get("length"), 1),
                fmt_ci(st.get("E"), 1),
                fmt_ci(st.get("E_per_1k"), 1),
                fmt(st.get("share_with_any")),
                fmt(st.get("problems")),
                fmt(st.get("samples")),
            ]
        )
    out.append(
        Table(
            "Table 1 — reasoning under richer context",
            [
                "context",
                "score",
                "length (tokens)",
                "E per response",
                "E per 1k tokens",
                "any hedge",
                "problems",
                "samples",
            ],
            rows,
        )
    )
    labels = list(ctxs)
    out.append(
        Figure(
            "Score, length and hedging per context",
            figures.bar_panels(
                labels,
                {
                    "score": [ctxs[c].get("score") for c in labels],
                    "length (tokens)": [ctxs[c].get("length") for c in labels],
                    "E per response": [ctxs[c].get("E") for c in labels],
                    "E per 1k tokens": [ctxs[c].get("E_per_1k") for c in labels],
                },
            ),
            "richer_context",
            "Bars: means over problems; whiskers: 95% bootstrap CIs.",
        )
    )
    words = _words_table("Hedge words per context", {c: ctxs[c].get("per_word") for c in labels})
    if words:
        out.append(words)
    files = summary.get("files", {})
    base = _samples(run / files["none"]) if "none" in files else []
    for ctx in ("s", "s-nothink", "regen"):
        if ctx in files and base:
            pair = _pair(f"Before / after: unguided vs {ctx}", "unguided", base, ctx, _samples(run / files[ctx]), lex)
            if pair:
                out.append(pair)
    return out


# ---------------------------------------------------------------- guided SFT (Table 2)


def guided_sft_section(run: Path, summary: dict[str, Any]) -> list[Block]:
    lex = _lexicon(summary.get("lexicon", "paper"))
    benches = summary.get("benchmarks", [])
    models = summary.get("models", {})
    out: list[Block] = [
        Heading(f"Guided vs unguided SFT (paper section 4): {summary.get('model')}"),
        Para(
            f"Accuracy is avg@{summary.get('n_eval')} (mean over problems of the share of correct samples) with 95% "
            "bootstrap CIs over problems. Both SFT sets hold correct traces of the same problems."
        ),
    ]
    ds = summary.get("datasets", {})
    out.append(
        Table(
            "SFT sets",
            ["set", "examples", "mean tokens", "E per trace"],
            [[k, fmt(v.get("examples")), fmt(v.get("mean_tokens"), 1), fmt(v.get("E"), 2)] for k, v in ds.items()],
        )
    )
    rows = [[MODEL_LABELS.get(m, m), *[fmt_ci(models[m].get(b, {}).get("score")) for b in benches]] for m in models]
    out.append(Table("Table 2 — accuracy", ["model", *benches], rows))
    erows = [
        [
            MODEL_LABELS.get(m, m),
            *[
                f"{fmt_ci(models[m][b].get('E'), 1)} / {fmt(models[m][b]['length']['value'], 0)}"
                for b in benches
                if b in models[m]
            ],
        ]
        for m in models
    ]
    out.append(Table("Hedging and length", ["model", *benches], erows, "E per response [95% CI] / mean tokens"))
    out.append(
        Figure(
            "Accuracy per benchmark",
            figures.grouped_bars(
                benches,
                {MODEL_LABELS.get(m, m): [models[m].get(b, {}).get("score") for b in benches] for m in models},
                "accuracy (avg@n)",
                "accuracy",
            ),
            "guided_sft_acc",
        )
    )
    out.append(
        Figure(
            "Hedges per response",
            figures.grouped_bars(
                benches,
                {MODEL_LABELS.get(m, m): [models[m].get(b, {}).get("E") for b in benches] for m in models},
                "E per response",
                "E",
            ),
            "guided_sft_e",
        )
    )
    if benches:
        words = _words_table(
            f"Hedge words on {benches[0]}", {m: models[m].get(benches[0], {}).get("per_word") for m in models}
        )
        if words:
            out.append(words)
        b0 = benches[0]
        base = _samples(run / models.get("base", {}).get(b0, {}).get("dir", "-") / "samples.jsonl")
        for m in ("unguided_sft", "guided_sft"):
            other = _samples(run / models.get(m, {}).get(b0, {}).get("dir", "-") / "samples.jsonl")
            pair = _pair(f"Before / after on {b0}: base vs {m}", "base", base, m, other, lex)
            if pair:
                out.append(pair)
    return out


# ---------------------------------------------------------------- coverage curves


def coverage_section(run: Path, summary: dict[str, Any]) -> list[Block]:
    lex = _lexicon(summary.get("lexicon", "paper"))
    curves = summary.get("curves", {})
    out: list[Block] = [
        Heading(f"Task coverage (paper sections 5-6): {summary.get('model')}"),
        Para(
            f"Methods {', '.join(summary.get('methods', []))} trained on coverage levels "
            f"{', '.join(summary.get('coverage', []))}; evaluated in-domain (the level's problems) and out of domain "
            f"({', '.join(summary.get('ood', []))}) with {summary.get('n_eval')} samples per problem. E and length are "
            "on the out-of-domain responses. Bands / brackets: 95% bootstrap CIs over problems."
        ),
    ]
    rows = []
    for lvl, methods in curves.items():
        for m, c in methods.items():
            last = c["points"][-1]
            first = c["points"][0]
            rows.append(
                [
                    lvl,
                    m,
                    fmt(last["step"]),
                    f"{fmt_ci(first.get('in_domain_acc'))} → {fmt_ci(last.get('in_domain_acc'))}",
                    f"{fmt_ci(first.get('ood_acc'))} → {fmt_ci(last.get('ood_acc'))}",
                    f"{fmt(_v(first.get('E')), 1)} → {fmt_ci(last.get('E'), 1)}",
                    f"{fmt(_v(first.get('length')), 0)} → {fmt_ci(last.get('length'), 0)}",
                ]
            )
    out.append(
        Table(
            "Step 0 → last step",
            ["coverage", "method", "last step", "in-domain acc", "OOD acc", "E per response (OOD)", "length (OOD)"],
            rows,
        )
    )
    panels: dict[str, dict[str, tuple[list[int], list[Any]]]] = {}
    for key, title in (
        ("in_domain_acc", "in-domain accuracy"),
        ("ood_acc", "OOD accuracy"),
        ("E", "E per response (OOD)"),
        ("length", "length in tokens (OOD)"),
    ):
        panels[title] = {f"{m} {lvl}": (c["steps"], c[key]) for lvl, ms in curves.items() for m, c in ms.items()}
    if curves:
        out.append(Figure("Curves over training", figures.curve_panels(panels), "coverage_curves"))
    for lvl, methods in curves.items():
        for m, c in methods.items():
            first, last = c["points"][0], c["points"][-1]
            ood = [k for k in (first.get("ood") or {})]
            if not ood or last is first:
                continue
            a = _samples(run / first["dirs"][f"ood-{ood[0]}"] / "samples.jsonl")
            b = _samples(run / last["dirs"][f"ood-{ood[0]}"] / "samples.jsonl")
            pair = _pair(
                f"Before / after on {ood[0]}: {m} at {lvl}, step 0 vs {last['step']}",
                "step 0",
                a,
                f"step {last['step']}",
                b,
                lex,
            )
            if pair:
                out.append(pair)
    return out


def _v(est: dict[str, Any] | None) -> float | None:
    return None if not est else est.get("value")


# ---------------------------------------------------------------- sdlens eval folders


def eval_section(run: Path) -> list[Block]:
    metrics = json.loads((run / "metrics.json").read_text())
    lex = _lexicon("paper")
    samples = _samples(run / "samples.jsonl")
    out: list[Block] = [
        Heading(f"Evaluation: {metrics.get('model')} on {metrics.get('benchmark')}"),
        Para(
            f"{metrics.get('problems')} problems, {metrics.get('samples')} samples (n = {metrics.get('n')}); "
            "95% bootstrap CIs over problems."
        ),
    ]
    rows = [[k, fmt_ci(v, 3)] for k, v in metrics.get("metrics", {}).items()]
    epi = metrics.get("epistemic", {})
    if epi.get("E_per_response"):
        rows.append(["E per response (paper lexicon)", fmt_ci(epi["E_per_response"], 2)])
        rows.append(["responses with any hedge", fmt(epi.get("responses_with_any"))])
    lengths = metrics.get("lengths") or {}
    for key in ("response_tokens", "thinking_tokens"):
        if isinstance(lengths.get(key), dict) and lengths[key].get("mean") is not None:
            rows.append([f"{key.replace('_', ' ')} (mean)", fmt(lengths[key]["mean"], 1)])
    rows.append(["boxed answers", fmt(metrics.get("boxed_fraction"))])
    out.append(Table("Metrics", ["metric", "value"], rows))
    if samples:
        from sdlens.epistemic import count_texts

        arrays = count_texts([s.response for s in samples], lex)
        out.append(
            Figure(
                "Hedges per response",
                figures.histogram([float(x) for x in arrays.totals], "E per response", "hedges (paper lexicon)"),
                "eval_hist",
            )
        )
        n = len(samples)
        per_word = {w: float(arrays.counts[:, k].sum()) / n for k, w in enumerate(lex.words)}
        words = _words_table("Hedge words", {"mean per response": per_word})
        if words:
            out.append(words)
        behaviour = measures_block([run / "samples.jsonl"])
        if behaviour:
            out.append(behaviour)
        right = [s for s in samples if s.correct]
        wrong = [s for s in samples if s.correct is False]
        if right and wrong:
            out.append(
                Pair(
                    "A correct and a wrong response",
                    _excerpt(f"correct ({right[0].problem_id})", right[0], lex),
                    _excerpt(f"wrong ({wrong[0].problem_id})", wrong[0], lex),
                )
            )
    return out
