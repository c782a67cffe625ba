"""`sdlens compare`: two runs side by side with bootstrap 95% CIs over problems and a verdict on hedging."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from sdlens.epistemic.analyze import AnalysisRun, AnalyzeConfig, run_analysis
from sdlens.epistemic.stats import P_ANY, P_RESP, P_TOTAL, P_UNITS, P_WORDS, ratio_names, ratio_parts
from sdlens.stats import bootstrap_sums, paired_bootstrap_sums, percentile_ci, unpaired_bootstrap_sums

METRICS = ("mean_per_response", "per_1k", "share_with_any", "mean_length")


def _strip(key: str) -> str:
    return key.split(":", 1)[1]


def _problem_table(paths: Iterable[str | Path], config: AnalyzeConfig) -> tuple[list[str], np.ndarray, dict]:
    return problem_table(run_analysis(paths, config))


def problem_table(run: AnalysisRun) -> tuple[list[str], np.ndarray, dict]:
    """Problem keys, the per-problem table the bootstrap resamples (hedge columns, then each measure's ratio
    numerators and denominators) and the run's summary."""
    pp = run.overall.per_problem()
    keys = list(run.overall.problems)
    res = run.result()
    if run.overall.measures:
        # the behaviour measures' per-problem numerators and denominators ride along as extra columns
        num, den = ratio_parts(run.overall.measures, run.overall.measure_table())
        pp = np.concatenate([pp.astype(float), num, den], axis=1)
        res["_measure_names"] = ratio_names(run.overall.measures)
    return keys, pp, res


def _stats(pp: np.ndarray) -> dict[str, np.ndarray]:
    """Ratio-of-sums statistics; ``pp`` is [..., P, C] or a stack of resampled sums [B, C]."""
    resp = pp[..., P_RESP].astype(float)
    units = pp[..., P_UNITS].astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return {
            "mean_per_response": pp[..., P_TOTAL] / resp,
            "per_1k": 1000 * pp[..., P_TOTAL] / units,
            "share_with_any": pp[..., P_ANY] / resp,
            "mean_length": units / resp,
            "words": pp[..., P_WORDS:] / resp[..., None],
        }


def _measure_stats(pp: np.ndarray, n_words: int, n_ratios: int) -> np.ndarray:
    """The behaviour measures' ratios from (summed) rows whose last ``2 * n_ratios`` columns are their parts."""
    base = P_WORDS + n_words
    num, den = pp[..., base : base + n_ratios], pp[..., base + n_ratios : base + 2 * n_ratios]
    with np.errstate(divide="ignore", invalid="ignore"):
        return num / den


def _num(x: Any) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


def compare(
    a: Iterable[str | Path],
    b: Iterable[str | Path],
    config: AnalyzeConfig | None = None,
    *,
    n_boot: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """Compare run B against run A (e.g. base vs self-distilled). Problems are resampled with replacement;
    when both runs cover the same problems the resampling is paired (the same problems drawn for both)."""
    config = config or AnalyzeConfig()
    keys_a, pp_a, res_a = _problem_table(a, config)
    keys_b, pp_b, res_b = _problem_table(b, config)
    ids_a = [_strip(k) for k in keys_a]
    ids_b = [_strip(k) for k in keys_b]
    paired = len(set(ids_a)) == len(ids_a) and set(ids_a) == set(ids_b) and len(ids_b) == len(set(ids_b))
    if paired:
        pos_b = {k: i for i, k in enumerate(ids_b)}
        pp_b = pp_b[[pos_b[k] for k in ids_a]]
        boot_a, boot_b = paired_bootstrap_sums(pp_a, pp_b, n_boot=n_boot, seed=seed)
    else:
        boot_a, boot_b = unpaired_bootstrap_sums(pp_a, pp_b, n_boot=n_boot, seed=seed)
    point_a, point_b = _stats(pp_a.sum(axis=0)), _stats(pp_b.sum(axis=0))
    dist_a, dist_b = _stats(boot_a), _stats(boot_b)
    metrics: dict[str, Any] = {}
    for name in METRICS:
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = point_b[name] / point_a[name]
            ratio_dist = dist_b[name] / dist_a[name]
        metrics[name] = {
            "a": _num(point_a[name]),
            "a_ci": percentile_ci(dist_a[name]),
            "b": _num(point_b[name]),
            "b_ci": percentile_ci(dist_b[name]),
            "ratio": _num(ratio),
            "ratio_ci": percentile_ci(ratio_dist),
        }
    words = res_a["per_word"].keys()
    n_words = len(words)
    if n_words != pp_a.shape[1] - P_WORDS:  # measure columns follow the words: keep them out of the word stats
        point_a["words"] = point_a["words"][..., :n_words]
        point_b["words"] = point_b["words"][..., :n_words]
        dist_a["words"] = dist_a["words"][..., :n_words]
        dist_b["words"] = dist_b["words"][..., :n_words]
    per_word = {}
    for j, w in enumerate(words):
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = point_b["words"][j] / point_a["words"][j]
            ratio_dist = dist_b["words"][:, j] / dist_a["words"][:, j]
        per_word[w] = {
            "a": _num(point_a["words"][j]),
            "a_ci": percentile_ci(dist_a["words"][:, j]),
            "b": _num(point_b["words"][j]),
            "b_ci": percentile_ci(dist_b["words"][:, j]),
            "ratio": _num(ratio),
            "ratio_ci": percentile_ci(ratio_dist),
        }
    e = metrics["mean_per_response"]
    fell, rose = _significance(e["ratio_ci"])
    measures = _compare_measures(res_a, pp_a, pp_b, boot_a, boot_b, n_words)
    out = {
        "lexicon": res_a["lexicon"],
        "scope": res_a["scope"],
        "length_unit": res_a["length_unit"],
        "a": {k: res_a[k] for k in ("files", "n_problems", "n_responses", "position_profile")},
        "b": {k: res_b[k] for k in ("files", "n_problems", "n_responses", "position_profile")},
        "paired": paired,
        "n_boot": n_boot,
        "seed": seed,
        "metrics": metrics,
        "per_word": per_word,
        "hedging_fell": fell,
        "hedging_rose": rose,
        "verdict": _verdict(e, fell, rose, paired),
    }
    if measures:
        out["measures"] = measures
    return out


def _compare_measures(res_a, pp_a, pp_b, boot_a, boot_b, n_words: int) -> dict[str, Any]:
    """Each behaviour measure's statistic in A and B with bootstrap CIs and the ratio B/A (same resamples as E)."""
    names = res_a.pop("_measure_names", None)
    if not names:
        return {}
    k = len(names)
    point_a, point_b = _measure_stats(pp_a.sum(axis=0), n_words, k), _measure_stats(pp_b.sum(axis=0), n_words, k)
    dist_a, dist_b = _measure_stats(boot_a, n_words, k), _measure_stats(boot_b, n_words, k)
    out: dict[str, Any] = {}
    for j, (measure, stat) in enumerate(names):
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = point_b[j] / point_a[j]
            ratio_dist = dist_b[:, j] / dist_a[:, j]
        out.setdefault(measure, {})[stat] = {
            "a": _num(point_a[j]),
            "a_ci": percentile_ci(dist_a[:, j]),
            "b": _num(point_b[j]),
            "b_ci": percentile_ci(dist_b[:, j]),
            "difference": _num(point_b[j] - point_a[j]),
            "difference_ci": percentile_ci(dist_b[:, j] - dist_a[:, j]),
            "ratio": _num(ratio),
            "ratio_ci": percentile_ci(ratio_dist),
        }
    return out


def bootstrap_run(run: AnalysisRun, *, n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """One run's estimates with bootstrap 95% CIs over problems (``{"value", "ci"}`` each): the compare metrics,
    each word per response, and each behaviour measure's statistics."""
    _, pp, res = problem_table(run)
    n_words = len(res["per_word"])
    boot = bootstrap_sums(pp, n_boot=n_boot, seed=seed)
    point, dist = _stats(pp.sum(axis=0)), _stats(boot)
    out: dict[str, Any] = {
        "metrics": {m: {"value": _num(point[m]), "ci": percentile_ci(dist[m])} for m in METRICS},
        "per_word": {
            w: {"value": _num(point["words"][j]), "ci": percentile_ci(dist["words"][:, j])}
            for j, w in enumerate(res["per_word"])
        },
    }
    names = res.pop("_measure_names", None)
    if names:
        k = len(names)
        pm, dm = _measure_stats(pp.sum(axis=0), n_words, k), _measure_stats(boot, n_words, k)
        measures: dict[str, Any] = {}
        for j, (measure, stat) in enumerate(names):
            measures.setdefault(measure, {})[stat] = {"value": _num(pm[j]), "ci": percentile_ci(dm[:, j])}
        out["measures"] = measures
    return out


def _significance(ci: list[float | None]) -> tuple[bool, bool]:
    lo, hi = ci
    if lo is None or hi is None:
        return False, False
    return hi < 1.0, lo > 1.0


def _fmt(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _verdict(e: dict[str, Any], fell: bool, rose: bool, paired: bool) -> str:
    lo, hi = e["ratio_ci"]
    change = (
        f"E {_fmt(e['a'])} -> {_fmt(e['b'])} per response (B/A = {_fmt(e['ratio'])}, "
        f"95% CI [{_fmt(lo)}, {_fmt(hi)}], {'paired' if paired else 'unpaired'} bootstrap over problems)"
    )
    if fell:
        return f"Hedging fell significantly: {change}."
    if rose:
        return f"Hedging rose significantly: {change}."
    return f"No significant change in hedging: {change}."
