"""The lab summary: the three effects across seeds, with 95% CIs and a plain verdict per effect.

With one seed a value's CI is the experiment's own (a bootstrap over problems). With several seeds the value is the
mean over seeds and the CI a t-interval over the seed means (the seeds' own CIs are kept under ``per_seed``).

One rule for every statement of every verdict, whichever method or model it is about: "a is below b" holds only
when a's CI lies entirely under b's; otherwise it is "not shown" (which is not "equal"). Each verdict is computed
from the numbers summary.json holds (``tests/test_lab.py`` recomputes every one of them from the file).
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


def _tries(seeds: list[dict[str, Any]], *path: str) -> dict[str, Any]:
    """Tries per response (``run_seed``'s ``tries``) at ``path``, combined over seeds."""
    stats = []
    for s in seeds:
        node: Any = s.get("tries") or {}
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        stats.append(node)
    return combine(stats)


def _richer(seeds: list[dict[str, Any]], corpus: str = "transfer") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, ctx in (("unguided", "none"), ("guided", "s")):
        ctxs = [(s["richer_context"].get("contexts") or {}).get(ctx, {}) for s in seeds]
        out[name] = {k: combine([c.get(k) for c in ctxs]) for k in ("score", "length", "E", "E_per_1k")}
        out[name]["tries"] = _tries(seeds, "richer_context", ctx)
    out["problems"] = [s["richer_context"].get("selection", {}).get("kept") for s in seeds]
    e_low = _below(out["guided"]["E"], out["unguided"]["E"])
    l_low = _below(out["guided"]["length"], out["unguided"]["length"])
    out["corpus"] = corpus
    out["given"] = corpus == "scripted"
    out["shown"] = bool(e_low and l_low)
    measured = (
        "solution-guided responses hedge less and are shorter than unguided ones"
        if out["shown"]
        else f"guided E below unguided: {_yn(e_low)}; guided length below unguided: {_yn(l_low)}"
    )
    if out["given"]:  # the corpus itself pairs hinted root-finding questions with direct answers
        out["verdict"] = f"given (premise): the scripted corpus shows hinted root-finding answered directly; {measured}"
    else:
        out["verdict"] = ("shown: " if out["shown"] else "NOT shown: ") + measured
    return out


def _yn(v: bool | None) -> str:
    return "-" if v is None else ("yes" if v else "no")


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
        out.setdefault("tries", {})[m] = _tries(seeds, "guided_sft", m)
    out["datasets"] = [s["guided_sft"].get("datasets") for s in seeds]
    acc_low = _below(out["ood_acc"]["guided_sft"], out["ood_acc"]["unguided_sft"])
    e_low = _below(out["E"]["guided_sft"], out["E"]["unguided_sft"])
    out["shown"] = bool(acc_low and e_low)
    out["verdict"] = (
        "shown: SFT on guided traces loses OOD accuracy and hedging against SFT on unguided traces"
        if out["shown"]
        else f"NOT shown: guided-SFT OOD accuracy below unguided-SFT: {_yn(acc_low)}; its E below: {_yn(e_low)}"
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
            for k in (*_KEYS, "tries"):
                entry[k] = [combine([r[k][i] for r in runs if len(r.get(k) or []) > i]) for i in range(len(steps))]
            out[level][_SHORT.get(method, method)] = entry
    return out


def _with_tries(seed: dict[str, Any]) -> dict[str, Any]:
    """The seed's coverage curves with each method's OOD tries per step beside its other series."""
    curves = seed["coverage"].get("curves") or {}
    tries = (seed.get("tries") or {}).get("coverage") or {}
    return {
        level: {m: {**c, "tries": (tries.get(level) or {}).get(m) or []} for m, c in methods.items()}
        for level, methods in curves.items()
    }


def _changes(entry: dict[str, Any]) -> dict[str, bool | None]:
    """First vs last evaluated step of one method's curve, each by the one rule (CIs apart)."""
    first, last = 0, -1
    return {
        "E_down": _below(entry["E"][last], entry["E"][first]),
        "length_down": _below(entry["length"][last], entry["length"][first]),
        "ood_down": _below(entry["ood_acc"][last], entry["ood_acc"][first]),
        "in_domain_up": _below(entry["in_domain_acc"][first], entry["in_domain_acc"][last]),
    }


def _contrast(sd: dict[str, Any], gr: dict[str, Any]) -> dict[str, bool | None]:
    """SDPO's last evaluated step against GRPO's (the same level, steps and evaluation), CIs apart."""
    return {
        "E_below": _below(sd["E"][-1], gr["E"][-1]),
        "ood_below": _below(sd["ood_acc"][-1], gr["ood_acc"][-1]),
    }


def _changes_text(name: str, c: dict[str, bool | None]) -> str:
    return (
        f"{name} hedges less {_yn(c['E_down'])}, shorter {_yn(c['length_down'])}, loses OOD {_yn(c['ood_down'])}, "
        f"gains in-domain {_yn(c['in_domain_up'])}"
    )


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
    out = _combine_curves([_with_tries(s) for s in seeds])
    verdicts = {}
    for level, methods in out.items():
        sd, gr = methods.get("sdpo"), methods.get("grpo")
        if not sd or not gr or len(sd["steps"]) < 2:
            continue
        sdc, grc, vs = _changes(sd), _changes(gr), _contrast(sd, gr)
        # the paper's effect: SDPO gains in-domain while it stops hedging, shortens and loses OOD accuracy, and ends
        # below GRPO (same level, same steps) in both hedging and OOD accuracy; GRPO's own changes are reported beside
        shown = bool(
            sdc["E_down"] and sdc["length_down"] and sdc["ood_down"] and sdc["in_domain_up"]
            and vs["E_below"] and vs["ood_below"]
        )  # fmt: skip
        verdicts[level] = {"shown": shown, "sdpo": sdc, "grpo": grc, "sdpo_vs_grpo": vs}
    # The paper's effect is a narrow-coverage one (a few problems seen many times); broad levels are reported beside
    # it, without a requirement (broader coverage is what the paper finds to soften it).
    narrow = [lvl for lvl in verdicts if _is_narrow(lvl)] or list(verdicts)
    for lvl, v in verdicts.items():
        v["narrow"] = lvl in narrow
    out_v = {"levels": verdicts, "shown": bool(narrow) and all(verdicts[lvl]["shown"] for lvl in narrow)}
    parts = [
        f"{lvl}{'' if v['narrow'] else ' (broad, not required)'}: {_changes_text('SDPO', v['sdpo'])}; "
        f"{_changes_text('GRPO', v['grpo'])}; SDPO ends below GRPO in E {_yn(v['sdpo_vs_grpo']['E_below'])}, "
        f"in OOD accuracy {_yn(v['sdpo_vs_grpo']['ood_below'])}"
        for lvl, v in verdicts.items()
    ]
    out_v["verdict"] = (
        "shown" if out_v["shown"] else "NOT shown on every narrow level"
    ) + " (first vs last step and SDPO vs GRPO at the last step, CIs apart): "
    out_v["verdict"] += "; ".join(parts)
    return {**out, "_verdict": out_v}


def _controls(seeds: list[dict[str, Any]], coverage: dict[str, Any]) -> dict[str, Any] | None:
    """The matched learning-rate controls beside the coverage runs they are matched with, and their verdict."""
    if not any(s.get("controls") for s in seeds):
        return None
    names = ("grpo_at_sdpo_lr", "sdpo_at_grpo_lr")
    first = next(s["controls"] for s in seeds if s.get("controls"))
    level = first[names[0]]["level"]
    curves = [{level: {n: {**(s.get("controls") or {}).get(n, {}), "method": n} for n in names}} for s in seeds]
    entries = _combine_curves(curves)[level]
    for n in names:
        entries[n]["method"] = first[n]["method"]
        entries[n]["learning_rate"] = first[n]["learning_rate"]
    sd, gr = coverage[level]["sdpo"], coverage[level]["grpo"]
    at = {
        "sdpo_lr": {"learning_rate": entries["grpo_at_sdpo_lr"]["learning_rate"], "sdpo": _changes(sd),
                    "grpo": _changes(entries["grpo_at_sdpo_lr"]),
                    "sdpo_vs_grpo": _contrast(sd, entries["grpo_at_sdpo_lr"])},
        "grpo_lr": {"learning_rate": entries["sdpo_at_grpo_lr"]["learning_rate"],
                    "sdpo": _changes(entries["sdpo_at_grpo_lr"]), "grpo": _changes(gr),
                    "sdpo_vs_grpo": _contrast(entries["sdpo_at_grpo_lr"], gr)},
    }  # fmt: skip
    holds = {k: bool(v["sdpo_vs_grpo"]["E_below"] and v["sdpo_vs_grpo"]["ood_below"]) for k, v in at.items()}
    where = [f"{'SDPO' if k == 'sdpo_lr' else 'GRPO'}'s" for k, h in holds.items() if h]
    lead = {
        2: "at both matched learning rates SDPO ends below GRPO in E and OOD accuracy",
        1: f"SDPO ends below GRPO in E and OOD accuracy only at {where[0] if where else ''} learning rate",
        0: "at neither matched learning rate does SDPO end below GRPO in both E and OOD accuracy",
    }[len(where)]
    parts = [
        f"at {'SDPO' if k == 'sdpo_lr' else 'GRPO'}'s learning rate ({v['learning_rate']:g}): "
        f"{_changes_text('SDPO', v['sdpo'])}; {_changes_text('GRPO', v['grpo'])}; SDPO ends below GRPO in E "
        f"{_yn(v['sdpo_vs_grpo']['E_below'])}, in OOD accuracy {_yn(v['sdpo_vs_grpo']['ood_below'])}"
        for k, v in at.items()
    ]
    verdict = {
        "level": level,
        "shown": all(holds.values()),  # the SDPO-GRPO contrast at both matched rates
        "holds": holds,
        **at,
        "verdict": f"{lead} ({level}, CIs apart): " + "; ".join(parts),
    }
    return {"matched_lr": {level: entries}, "_verdict": verdict}


def summarize(cfg: Any, seeds: list[dict[str, Any]]) -> dict[str, Any]:
    """The lab's ``summary.json`` content from the per-seed results of :func:`sdlens.lab.run.run_seed`."""
    cov = _coverage(seeds)
    verdict = cov.pop("_verdict")
    controls = _controls(seeds, cov)
    matched = controls.pop("_verdict") if controls else None
    rc = _richer(seeds, getattr(cfg, "corpus", "transfer"))
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
    if controls:
        extra["controls"] = controls
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
            "richer_context": {"shown": rc["shown"], "given": rc["given"], "verdict": rc["verdict"]},
            "guided_sft": {"shown": gs["shown"], "verdict": gs["verdict"]},
            "coverage": verdict,
            **({"matched_lr": matched} if matched else {}),
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
    tries_rc = {n: rc[n].get("tries") for n in ("unguided", "guided")}
    tries_gs = gs.get("tries") or {}
    tables = [
        (
            "1. Richer context (in-domain problems solved 1-4 of 8)",
            ["context", "score %", "length (tokens)", "E per response", "tries per response"],
            [
                [n, _fmt(rc[n]["score"], True), _fmt(rc[n]["length"]), _fmt(rc[n]["E"]), _fmt(tries_rc[n])]
                for n in ("unguided", "guided")
            ],
        ),
        (
            "2. SFT on unguided vs guided traces (held-out OOD problems)",
            ["model", "OOD acc %", "E per response", "tries per response", "length"],
            [
                [m, _fmt(gs["ood_acc"][m], True), _fmt(gs["E"][m]), _fmt(tries_gs.get(m)), _fmt(gs["length"][m])]
                for m in ("base", "unguided_sft", "guided_sft")
            ],
        ),
    ]
    head = ["in-domain acc %", "OOD acc %", "E (OOD)", "length (OOD)", "tries (OOD)"]
    keys = (*_KEYS, "tries")

    def curve_rows(label: str, entries: dict[str, Any]) -> Rows:
        rows: Rows = []
        for short, e in entries.items():
            series = {k: e.get(k) or [None] * len(e["steps"]) for k in keys}
            if curves:
                for i, step in enumerate(e["steps"]):
                    rows.append([label, short, str(step), *(_fmt(series[k][i], k.endswith("acc")) for k in keys)])
            else:
                rows.append(
                    [label, short, f"{e['steps'][0]} -> {e['steps'][-1]}"]
                    + [
                        f"{_fmt(series[k][0], k.endswith('acc'))} -> {_fmt(series[k][-1], k.endswith('acc'))}"
                        for k in keys
                    ]
                )
        return rows

    rows: Rows = []
    for level, methods in summary["coverage"].items():
        rows += curve_rows(level, methods)
    title = "3. SDPO vs GRPO by coverage" + ("" if curves else " (first -> last evaluated step)")
    tables.append((title, ["level", "method", "step" if curves else "steps", *head], rows))
    matched = (summary.get("controls") or {}).get("matched_lr") or {}
    if matched:
        rows = []
        for level, entries in matched.items():
            named = {f"{n} ({e.get('learning_rate', 0):g})": e for n, e in entries.items()}
            rows += curve_rows(level, named)
        tables.append(
            (
                "3b. Matched learning-rate controls (each method at the other's learning rate)",
                ["level", "run (learning rate)", "step" if curves else "steps", *head],
                rows,
            )
        )
    if summary.get("mitigations"):

        def yn(v: bool | None) -> str:
            return "-" if v is None else ("yes" if v else "no")

        tables.append(
            (
                "4. Mitigations (last evaluated step, beside the two baselines; loses / gains: against the base "
                "model, CIs apart - no means not shown)",
                ["method", "level", "step", *head[: len(_KEYS)], "loses hedging", "loses OOD acc", "gains in-domain"],
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
