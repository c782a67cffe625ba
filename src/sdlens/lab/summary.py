"""The lab summary: the three effects across seeds, with 95% CIs and a plain verdict per effect.

With one seed a value's CI is the experiment's own (a bootstrap over problems). With several seeds the value is the
mean over seeds and the CI a t-interval over the seed means (the seeds' own CIs are kept under ``per_seed``).
A verdict is "shown" only when the direction holds and the two CIs do not overlap; otherwise the summary says so.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["lab_tables", "summarize", "summary_markdown", "summary_table", "verdict_lines"]

BASE_MIN_ACC = 0.15  # random guessing with one unchecked answer gets 1/7 = 14%
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def _value(stat: Any) -> float | None:
    if isinstance(stat, dict):
        return stat.get("value")
    return stat


def combine(stats: list[Any]) -> dict[str, Any]:
    """``{"value", "ci"}`` over seeds (see the module doc); ``None`` entries are skipped."""
    stats = [s for s in stats if _value(s) is not None]
    if not stats:
        return {"value": None, "ci": None}
    if len(stats) == 1:
        s = stats[0]
        return {"value": _value(s), "ci": s.get("ci") if isinstance(s, dict) else None}
    vals = [float(_value(s)) for s in stats]
    n = len(vals)
    mean = sum(vals) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1))
    half = _T975.get(n - 1, 1.96) * sd / math.sqrt(n)
    return {"value": mean, "ci": [mean - half, mean + half], "seeds": vals}


def _below(a: dict[str, Any], b: dict[str, Any]) -> bool | None:
    """a clearly below b: a's CI entirely under b's (values only when a CI is missing)."""
    if a.get("value") is None or b.get("value") is None:
        return None
    if a.get("ci") and b.get("ci"):
        return a["ci"][1] < b["ci"][0]
    return a["value"] < b["value"]


def _richer(seeds: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, ctx in (("unguided", "none"), ("guided", "s")):
        ctxs = [(s["richer_context"].get("contexts") or {}).get(ctx, {}) for s in seeds]
        out[name] = {k: combine([c.get(k) for c in ctxs]) for k in ("score", "length", "E", "E_per_1k")}
    out["problems"] = [s["richer_context"].get("selection", {}).get("kept") for s in seeds]
    e_low = _below(out["guided"]["E"], out["unguided"]["E"])
    l_low = _below(out["guided"]["length"], out["unguided"]["length"])
    out["shown"] = bool(e_low and l_low)
    out["verdict"] = (
        "shown: solution-guided responses hedge less and are shorter than unguided ones"
        if out["shown"]
        else f"NOT shown: guided E below unguided: {e_low}; guided length below unguided: {l_low}"
    )
    return out


def _guided_sft(seeds: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"ood_acc": {}, "E": {}, "length": {}}
    for m in ("base", "unguided_sft", "guided_sft"):
        per = []
        for s in seeds:
            models = s["guided_sft"].get("models") or {}
            benches = models.get(m) or {}
            per.append(next(iter(benches.values()), {}) if benches else {})
        out["ood_acc"][m] = combine([p.get("score") for p in per])
        out["E"][m] = combine([p.get("E") for p in per])
        out["length"][m] = combine([p.get("length") for p in per])
    out["datasets"] = [s["guided_sft"].get("datasets") for s in seeds]
    acc_low = _below(out["ood_acc"]["guided_sft"], out["ood_acc"]["unguided_sft"])
    e_low = _below(out["E"]["guided_sft"], out["E"]["unguided_sft"])
    out["shown"] = bool(acc_low and e_low)
    out["verdict"] = (
        "shown: SFT on guided traces loses OOD accuracy and hedging against SFT on unguided traces"
        if out["shown"]
        else f"NOT shown: guided-SFT OOD accuracy below unguided-SFT: {acc_low}; its E below: {e_low}"
    )
    return out


_KEYS = ("in_domain_acc", "ood_acc", "E", "length")
# the two methods the coverage verdict compares; any other preset (a mitigation) keeps its preset name
_SHORT = {"sdpo-paper": "sdpo", "grpo-paper": "grpo"}


def _combine_curves(curves: list[dict[str, Any]]) -> dict[str, Any]:
    """Per level and method, each key's value per evaluated step, combined over seeds (mean, t-interval)."""
    out: dict[str, Any] = {}
    for level in list(curves[0]) if curves else []:
        out[level] = {}
        for method in curves[0][level]:
            runs = [c.get(level, {}).get(method, {}) for c in curves]
            steps = runs[0].get("steps", [])
            entry: dict[str, Any] = {"method": method, "steps": steps}
            for k in _KEYS:
                entry[k] = [combine([r[k][i] for r in runs if len(r.get(k, [])) > i]) for i in range(len(steps))]
            out[level][_SHORT.get(method, method)] = entry
    return out


def _mitigations(coverage: dict[str, Any], seeds: list[dict[str, Any]], level: str) -> dict[str, Any]:
    """Each method's last evaluated checkpoint on ``level``: the baselines from the coverage stage, the mitigation
    presets from the mitigations stage (the same level, sets, budgets and seeds)."""
    mit = _combine_curves([(s.get("mitigations") or {}).get("curves") or {} for s in seeds])
    entries = {**coverage.get(level, {}), **mit.get(level, {})}
    out: dict[str, Any] = {}
    for name, entry in entries.items():
        if not entry.get("steps"):
            continue
        last = {k: entry[k][-1] for k in _KEYS if entry.get(k)}
        base = {k: entry[k][0] for k in _KEYS if entry.get(k)}  # step 0: the base model every method starts from
        out[entry.get("method", name)] = {
            "level": level,
            "step": entry["steps"][-1],
            **last,
            # against the base model, CIs apart (the rule of the lab's verdicts): "no" means "not shown", not "kept"
            "loses_hedging": _below(last["E"], base["E"]) if "E" in last else None,
            "loses_ood_acc": _below(last["ood_acc"], base["ood_acc"]) if "ood_acc" in last else None,
            "gains_in_domain": _below(base["in_domain_acc"], last["in_domain_acc"])
            if "in_domain_acc" in last
            else None,
        }
    return out


def _is_narrow(level: str) -> bool:
    """A ``KxM`` level with M >= 2 copies of each problem (``1x64``, ``8x8``); ``64`` or a file is broad."""
    from sdlens.experiments.coverage import parse_level

    try:
        parsed = parse_level(level)
    except Exception:
        return False
    return parsed is not None and parsed[1] >= 2


def _coverage(seeds: list[dict[str, Any]]) -> dict[str, Any]:
    out = _combine_curves([s["coverage"].get("curves") or {} for s in seeds])
    verdicts = {}
    for level, methods in out.items():
        sd, gr = methods.get("sdpo"), methods.get("grpo")
        if not sd or not gr or len(sd["steps"]) < 2:
            continue
        first, last = 0, -1
        sd_e_low = _below(sd["E"][last], sd["E"][first])
        sd_ood_low = _below(sd["ood_acc"][last], sd["ood_acc"][first])
        sd_len_low = _below(sd["length"][last], sd["length"][first])
        sd_ind_up = _below(sd["in_domain_acc"][first], sd["in_domain_acc"][last])
        gr_ood_low = _below(gr["ood_acc"][last], gr["ood_acc"][first])
        gr_e_low = _below(gr["E"][last], gr["E"][first])
        shown = bool(sd_e_low and sd_ood_low and sd_len_low and not gr_ood_low and not gr_e_low)
        verdicts[level] = {
            "shown": shown,
            "sdpo": {"E_down": sd_e_low, "ood_down": sd_ood_low, "length_down": sd_len_low, "in_domain_up": sd_ind_up},
            "grpo": {"E_down": gr_e_low, "ood_down": gr_ood_low},
        }
    # The paper's effect is a narrow-coverage one (a few problems seen many times); broad levels are reported beside
    # it, without a requirement (broader coverage is what the paper finds to soften it).
    narrow = [lvl for lvl in verdicts if _is_narrow(lvl)] or list(verdicts)
    for lvl, v in verdicts.items():
        v["narrow"] = lvl in narrow
    out_v = {"levels": verdicts, "shown": bool(narrow) and all(verdicts[lvl]["shown"] for lvl in narrow)}

    def yn(v: bool | None) -> str:
        return "yes" if v else "no"

    parts = [
        f"{lvl}{'' if v['narrow'] else ' (broad, not required)'}: SDPO hedges less {yn(v['sdpo']['E_down'])}, "
        f"shorter {yn(v['sdpo']['length_down'])}, "
        f"loses OOD {yn(v['sdpo']['ood_down'])}, gains in-domain {yn(v['sdpo']['in_domain_up'])}; GRPO hedges less "
        f"{yn(v['grpo']['E_down'])}, loses OOD {yn(v['grpo']['ood_down'])}"
        for lvl, v in verdicts.items()
    ]
    out_v["verdict"] = (
        "shown" if out_v["shown"] else "NOT shown on every narrow level"
    ) + " (first vs last step, CIs apart): "
    out_v["verdict"] += "; ".join(parts)
    return {**out, "_verdict": out_v}


def summarize(cfg: Any, seeds: list[dict[str, Any]]) -> dict[str, Any]:
    """The lab's ``summary.json`` content from the per-seed results of :func:`sdlens.lab.run.run_seed`."""
    cov = _coverage(seeds)
    verdict = cov.pop("_verdict")
    rc = _richer(seeds)
    gs = _guided_sft(seeds)
    # The effects are only interpretable if the base model learned the task: it must solve a fair share of unseen
    # problems by exploring (a model that cannot check its guesses has no useful doubt to lose).
    base_acc = [_value(x) for x in (gs["ood_acc"]["base"].get("seeds") or [gs["ood_acc"]["base"].get("value")])]
    weak = [s["seed"] for s, a in zip(seeds, base_acc, strict=False) if a is not None and a < BASE_MIN_ACC]
    base = {
        "pretraining_attempts": {str(s["seed"]): s.get("gate", []) for s in seeds},
        "ood_acc": gs["ood_acc"]["base"],
        "min_acc": BASE_MIN_ACC,
        "weak_seeds": weak,
        "verdict": (
            "the base model learned the task (guess, check, retry) on every seed"
            if not weak
            else f"WARNING: the base model of seed(s) {weak} solves under {BASE_MIN_ACC:.0%} of OOD problems: it did "
            "not learn to check its guesses; its effects are not interpretable (pretrain longer)"
        ),
    }
    extra = (
        {"mitigations": _mitigations(cov, seeds, cfg.mitigation_level)} if getattr(cfg, "mitigations", False) else {}
    )
    return {
        "kind": "lab",
        "mode": cfg.mode,
        "seeds": [s["seed"] for s in seeds],
        "richer_context": rc,
        "guided_sft": gs,
        "coverage": cov,
        **extra,
        "base_model": base,
        "effects": {
            "richer_context": {"shown": rc["shown"], "verdict": rc["verdict"]},
            "guided_sft": {"shown": gs["shown"], "verdict": gs["verdict"]},
            "coverage": verdict,
        },
        "times": [s["times"] for s in seeds],
        "split": [s["split"] for s in seeds],
        "dirs": {
            "richer_context": "seed-0/richer_context",
            "guided_sft": "seed-0/guided_sft",
            "coverage": "seed-0/coverage",
        },
    }


def _fmt(stat: dict[str, Any] | None, pct: bool = False) -> str:
    if not stat or stat.get("value") is None:
        return "-"
    k = 100.0 if pct else 1.0
    v = stat["value"] * k
    ci = stat.get("ci")
    return f"{v:.1f} [{ci[0] * k:.1f}, {ci[1] * k:.1f}]" if ci else f"{v:.1f}"


Rows = list[list[str]]


def lab_tables(summary: dict[str, Any], *, curves: bool = True) -> list[tuple[str, list[str], Rows]]:
    """The summary's tables as ``(title, header, rows)``: richer context, guided SFT, coverage (every evaluated step,
    or first -> last with ``curves=False``) and, when present, the mitigations. Shared by the printed summary,
    ``summary.md`` and the report."""
    rc, gs = summary["richer_context"], summary["guided_sft"]
    tables = [
        (
            "1. Richer context (in-domain problems solved 1-4 of 8)",
            ["context", "score %", "length (tokens)", "E per response"],
            [[n, _fmt(rc[n]["score"], True), _fmt(rc[n]["length"]), _fmt(rc[n]["E"])] for n in ("unguided", "guided")],
        ),
        (
            "2. SFT on unguided vs guided traces (held-out OOD problems)",
            ["model", "OOD acc %", "E per response", "length"],
            [
                [m, _fmt(gs["ood_acc"][m], True), _fmt(gs["E"][m]), _fmt(gs["length"][m])]
                for m in ("base", "unguided_sft", "guided_sft")
            ],
        ),
    ]
    rows: Rows = []
    for level, methods in summary["coverage"].items():
        for short, e in methods.items():
            if curves:
                for i, step in enumerate(e["steps"]):
                    rows.append([level, short, str(step), *(_fmt(e[k][i], k.endswith("acc")) for k in _KEYS)])
            else:
                rows.append(
                    [level, short, f"{e['steps'][0]} -> {e['steps'][-1]}"]
                    + [f"{_fmt(e[k][0], k.endswith('acc'))} -> {_fmt(e[k][-1], k.endswith('acc'))}" for k in _KEYS]
                )
    head = ["in-domain acc %", "OOD acc %", "E (OOD)", "length (OOD)"]
    title = "3. SDPO vs GRPO by coverage" + ("" if curves else " (first -> last evaluated step)")
    tables.append((title, ["level", "method", "step" if curves else "steps", *head], rows))
    if summary.get("mitigations"):

        def yn(v: bool | None) -> str:
            return "-" if v is None else ("yes" if v else "no")

        tables.append(
            (
                "4. Mitigations (last evaluated step, beside the two baselines; loses / gains: against the base "
                "model, CIs apart - no means not shown)",
                ["method", "level", "step", *head, "loses hedging", "loses OOD acc", "gains in-domain"],
                [
                    [
                        name,
                        e["level"],
                        str(e["step"]),
                        *(_fmt(e.get(k), k.endswith("acc")) for k in _KEYS),
                        *(yn(e.get(k)) for k in ("loses_hedging", "loses_ood_acc", "gains_in_domain")),
                    ]
                    for name, e in summary["mitigations"].items()
                ],
            )
        )
    return tables


def verdict_lines(summary: dict[str, Any]) -> list[str]:
    return [f"base model: {summary['base_model']['verdict']}"] + [
        f"{k}: {v['verdict']}" for k, v in summary["effects"].items()
    ]


def summary_table(summary: dict[str, Any]):
    """A rich renderable: one table per effect (coverage first -> last step), the mitigations, the verdicts."""
    from rich.console import Group
    from rich.table import Table

    parts: list[Any] = []
    for title, header, rows in lab_tables(summary, curves=False):
        t = Table(title=title)
        for c in header:
            t.add_column(c)
        for r in rows:
            t.add_row(*r)
        parts.append(t)
    return Group(*parts, "\n".join(verdict_lines(summary)))


def summary_markdown(summary: dict[str, Any]) -> str:
    """The tables (coverage at every evaluated step) and the verdicts as Markdown (what docs/organism.md shows)."""
    out: list[str] = []
    for _title, header, rows in lab_tables(summary):
        out += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        out += ["| " + " | ".join(r) + " |" for r in rows]
        out.append("")
    out += [f"- {line}" for line in verdict_lines(summary)]
    return "\n".join(out) + "\n"
