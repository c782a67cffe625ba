"""Simulated runs for the detector's error rates (docs/monitor.md; ``python -m sdlens.monitor.simulate``).

A simulated run is a per-step hedge rate and mean length: a true curve times log-normal step noise with AR(1)
correlation (one step's batch of prompts resembles the next; the policy drifts slowly). ``noise`` is the standard
deviation of the log of a step's value: about ``cv / sqrt(rollouts per step)``, with the per-response coefficient of
variation of hedges per 1k tokens near 1 in the paper's traces, so 0.15 is ~45 rollouts a step, 0.1 ~100.

- flat: the true curves stay at their start; every ``suppressing`` is a false alarm.
- collapse: flat for ``onset`` steps, then the hedge rate falls geometrically to ``floor`` of its start over
  ``duration`` steps (the paper: 182 -> 9 hedges per response, a floor of 5%) and the length to ``length_floor``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sdlens.monitor.detector import Detector, DetectorConfig
from sdlens.runfolder import atomic_path

__all__ = ["SimConfig", "detection_delays", "false_alarm_rate", "simulate_series", "write_verl_dump"]


@dataclass
class SimConfig:
    steps: int = 100
    noise: float = 0.15  # sd of log(step value)
    length_noise: float = 0.1
    rho: float = 0.3  # AR(1) correlation of the log-noise between consecutive steps
    onset: int = 10  # collapse only: last flat step
    duration: int = 40  # collapse only: steps from the start of the fall to the floor
    floor: float = 0.05  # collapse only: final hedge rate / start
    length_floor: float = 0.6  # collapse only: final length / start


def _ar1(rng: np.random.Generator, n: int, sd: float, rho: float) -> np.ndarray:
    e = rng.normal(0.0, sd * np.sqrt(1 - rho**2), n)
    out = np.empty(n)
    out[0] = rng.normal(0.0, sd)
    for t in range(1, n):
        out[t] = rho * out[t - 1] + e[t]
    return out


def simulate_series(kind: str, cfg: SimConfig, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(hedges per 1k tokens, mean length)`` per step of one simulated run; ``kind``: flat or collapse."""
    rng = np.random.default_rng(seed)
    t = np.arange(cfg.steps)
    if kind == "flat":
        hedge_curve = np.ones(cfg.steps)
        length_curve = np.ones(cfg.steps)
    elif kind == "collapse":
        frac = np.clip((t - cfg.onset) / cfg.duration, 0.0, 1.0)
        hedge_curve = cfg.floor**frac
        length_curve = cfg.length_floor**frac
    else:
        raise ValueError(f"kind must be flat or collapse, got {kind!r}")
    hedge = 8.0 * hedge_curve * np.exp(_ar1(rng, cfg.steps, cfg.noise, cfg.rho))
    length = 2000.0 * length_curve * np.exp(_ar1(rng, cfg.steps, cfg.length_noise, cfg.rho))
    return hedge, length


def _first(kind: str, cfg: SimConfig, seed: int, det_cfg: DetectorConfig | None, state: str) -> int | None:
    det = Detector(det_cfg)
    hedge, length = simulate_series(kind, cfg, seed)
    for step, (h, n) in enumerate(zip(hedge, length, strict=True)):
        v = det.update(float(h), float(n), step)
        if v.state == state or (state == "warning" and v.state == "suppressing"):
            return step
    return None


def false_alarm_rate(
    cfg: SimConfig, seeds: range, det_cfg: DetectorConfig | None = None, state: str = "suppressing"
) -> float:
    """Share of flat runs in which the detector ever reaches ``state`` (warning counts suppressing too)."""
    fired = sum(_first("flat", cfg, s, det_cfg, state) is not None for s in seeds)
    return fired / len(seeds)


def detection_delays(cfg: SimConfig, seeds: range, det_cfg: DetectorConfig | None = None) -> list[int | None]:
    """Steps from the start of the collapse to the first ``suppressing`` per run (None: never fired)."""
    out = []
    for s in seeds:
        first = _first("collapse", cfg, s, det_cfg, "suppressing")
        out.append(None if first is None else first - cfg.onset)
    return out


_FILLER_TEXT = (
    "so the sum of the roots is x plus y and then we divide both sides by two to get the value of n "
    "since the area equals base times height over two the answer follows from the equation above"
)
_HEDGES = ("wait", "hmm", "perhaps", "maybe", "actually", "alternatively", "seems", "might", "likely", "check")


def write_verl_dump(
    out: str | Path, kind: str = "collapse", *, cfg: SimConfig | None = None, seed: int = 0, rollouts: int = 16
) -> Path:
    """Write a verl ``rollout_data_dir`` dump (``{step}.jsonl``, lines with ``input``, ``output``, ``score``,
    ``step``) whose responses follow a simulated run: each step's hedges per 1k words and mean length in words are
    :func:`simulate_series`'s, the hedges placed at random among filler words. For trying ``sdlens monitor``."""

    cfg = cfg or SimConfig(steps=40, duration=20)
    hedge, length = simulate_series(kind, cfg, seed)
    rng = np.random.default_rng(seed + 1)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for step in range(cfg.steps):
        lines = []
        for r in range(rollouts):
            n = max(5, int(rng.poisson(length[step] / 10)))  # a tenth of the simulated length keeps files small
            words = [str(w) for w in rng.choice(_FILLER_TEXT.split(), n)]
            for _ in range(int(rng.poisson(hedge[step] * n / 1000))):
                words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(_HEDGES)))
            row = {"input": f"problem {r // 4}", "output": " ".join(words), "score": float(rng.random() < 0.5)}
            lines.append(json.dumps({**row, "step": step + 1}))
        with atomic_path(out / f"{step + 1}.jsonl") as tmp:
            tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def _table(seeds: int = 1000) -> None:  # pragma: no cover - documentation numbers, run by hand
    for noise in (0.1, 0.15, 0.25):
        for steps in (100, 300):
            cfg = SimConfig(steps=steps, noise=noise)
            fa = false_alarm_rate(cfg, range(seeds))
            fw = false_alarm_rate(cfg, range(seeds), state="warning")
            print(f"flat noise={noise} steps={steps}: suppressing {fa:.3f}, warning {fw:.3f}")
    for noise in (0.1, 0.15, 0.25):
        for duration in (10, 40, 100):
            cfg = SimConfig(steps=200, noise=noise, duration=duration)
            d = detection_delays(cfg, range(seeds // 2))
            hit = [x for x in d if x is not None]
            q = np.percentile(hit, [50, 90]) if hit else [float("nan")] * 2
            print(
                f"collapse noise={noise} duration={duration}: detected {len(hit) / len(d):.3f}, "
                f"delay median {q[0]:.0f} p90 {q[1]:.0f} max {max(hit) if hit else None}"
            )


def main(argv: list[str] | None = None) -> None:
    """``python -m sdlens.monitor.simulate table [SEEDS]`` prints the error rates; ``... dump OUT [flat|collapse]``
    writes a simulated verl dump."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["dump"] and len(args) >= 2:
        kind = args[2] if len(args) > 2 else "collapse"
        print(write_verl_dump(args[1], kind))
    elif args[:1] == ["table"]:
        _table(int(args[1]) if len(args) > 1 else 1000)
    else:
        raise SystemExit("usage: python -m sdlens.monitor.simulate table [SEEDS] | dump OUT [flat|collapse]")


if __name__ == "__main__":  # pragma: no cover
    main()
