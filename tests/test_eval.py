"""The eval runner: records, metrics, manifest, resume after a real SIGKILL, refusal of foreign runs, CLI errors.
Runs on the tiny random model (fast); SmolLM2 end to end is in test_eval_smollm2.py."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import typer
from typer.testing import CliRunner

from sdlens.cli.eval import register
from sdlens.errors import InputError
from sdlens.evaluate import EvalConfig, run_eval
from sdlens.generation import GenResult, SamplingConfig
from sdlens.io import read_records
from sdlens.schema import Sample

ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}
EVAL = [sys.executable, "-m", "sdlens.cli", "eval"]


@pytest.fixture(scope="module")
def tiny_backend():
    from sdlens.generation import make_backend

    return make_backend("transformers", "tiny-random")


def cfg(out: Path, **kw) -> EvalConfig:
    base = dict(model="tiny-random", benchmark="math500", limit=4, n=3, max_tokens=24, batch_size=6, out=str(out))
    base.update(kw)
    return EvalConfig(**base)


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def keyed(path: Path) -> dict:
    return {(r["problem_id"], r["index"]): r for r in rows(path)}


def test_eval_writes_graded_samples_metrics_and_manifest(tmp_path, tiny_backend):
    res = run_eval(cfg(tmp_path), progress=False, backend=tiny_backend)
    assert res.new_samples == 12 and res.resumed_samples == 0
    samples = list(read_records(tmp_path / "samples.jsonl"))
    assert len(samples) == 12
    assert len({(s.problem_id, s.index) for s in samples}) == 12
    s = samples[0]
    assert s.model == "tiny-random" and s.source == "math500" and s.answer
    assert s.grader == "math-verify" and s.correct is False
    assert s.finish_reason in ("stop", "length")
    assert isinstance(s.n_tokens, int) and isinstance(s.n_thinking_tokens, int)
    assert s.thinking is not None and s.answer_text is not None
    assert s.sampling["temperature"] == 0.6 and s.sampling["top_p"] == 0.95 and s.sampling["max_tokens"] == 24
    assert s.sampling["run_seed"] == 0 and isinstance(s.sampling["seed"], int)
    assert len({x.sampling["seed"] for x in samples}) == 12
    assert s.meta["epistemic"] == {
        "paper": s.response.lower().count("wait")
        + sum(
            s.response.lower().count(w)
            for w in ("hmm", "perhaps", "maybe", "actually", "alternatively", "seems", "might", "likely", "check")
        )
    }
    assert s.meta["n_generated_tokens"] <= 24 and "logprob_mean" in s.meta
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["n"] == 3 and m["problems"] == 4 and m["samples"] == 12
    assert {"avg@n", "pass@1", "pass@2", "pass@3", "any-correct@n", "maj@3"} <= set(m["metrics"])
    assert m["metrics"]["avg@n"]["ci"] is not None
    assert m["lengths"]["response_tokens"]["mean"] > 0 and "thinking_tokens" in m["lengths"]
    assert set(m["epistemic"]) >= {"E_per_response", "lexicon"} and m["boxed_fraction"] == 0.0
    assert list(m["per_problem"].values()) == [[0, 3]] * 4
    man = json.loads((tmp_path / "manifest.json").read_text())
    assert man["status"] == "complete"
    assert man["identity"]["model"] == "tiny-random" and len(man["identity"]["data_sha256"]) == 64
    assert man["data"]["name"] == "math500" and man["data"]["selected"] == 4
    assert man["backend"]["backend"] == "transformers" and "torch" in man["versions"]
    assert man["model"]["kind"] == "tiny" and man["sessions"][-1]["new_samples"] == 12
    # rerun: nothing to do, same metrics
    again = run_eval(cfg(tmp_path), progress=False, backend=tiny_backend)
    assert again.new_samples == 0 and again.resumed_samples == 12 and again.metrics == res.metrics


def test_sample_builder_counts_hedges_and_thinking_tokens(tiny_backend):
    from sdlens.evaluate import _SampleBuilder
    from sdlens.generation import GenRequest
    from sdlens.schema import Problem

    text = "<think>Wait, hmm... maybe it is unlikely. Let me check.</think>So the answer is \\boxed{5}."
    p = Problem(id="p", messages=[{"role": "user", "content": "q"}], answer="5", source="x")
    b = _SampleBuilder(tiny_backend, SamplingConfig(n=1), 0, save_logprobs=True)
    [s] = b.build(
        [p],
        [GenRequest(p.messages, seed=3, key=("p", 0))],
        [GenResult(text=text, n_generated=30, finish_reason="stop", logprobs=[-0.5, -1.5])],
    )
    assert s.meta["epistemic"]["paper"] == 5  # wait, hmm, maybe, likely (in "unlikely"), check
    assert s.thinking == "Wait, hmm... maybe it is unlikely. Let me check." and s.answer_text.endswith("{5}.")
    tok = tiny_backend.tokenizer
    assert s.n_tokens == len(tok(text, add_special_tokens=False)["input_ids"])
    assert s.n_thinking_tokens == len(tok(s.thinking, add_special_tokens=False)["input_ids"])
    assert s.meta["logprobs"] == [-0.5, -1.5] and s.meta["logprob_sum"] == -2.0
    assert s.sampling["seed"] == 3


def test_resume_after_sigkill_equals_an_uninterrupted_run(tmp_path):
    """A real `sdlens eval` subprocess, SIGKILLed as soon as it has written samples, then the same command rerun."""
    args = [
        "--model",
        "tiny-random",
        "--benchmark",
        "math500",
        "--limit",
        "24",
        "--n",
        "4",
        "--max-tokens",
        "96",
        "--batch-size",
        "8",
        "--no-progress",
    ]
    full, killed = tmp_path / "full", tmp_path / "killed"
    p = subprocess.run([*EVAL, *args, "--out", str(full)], capture_output=True, text=True, env=ENV, timeout=300)
    assert p.returncode == 0, p.stderr
    proc = subprocess.Popen(
        [*EVAL, *args, "--out", str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV
    )
    samples = killed / "samples.jsonl"
    deadline = time.time() + 120
    while not (samples.exists() and samples.stat().st_size > 0):
        assert proc.poll() is None and time.time() < deadline, "the run ended before writing anything"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    partial = samples.read_bytes().count(b"\n")
    assert 0 < partial < 96, "the kill came too late to test a resume"
    assert json.loads((killed / "manifest.json").read_text())["status"] == "running"
    assert not (killed / "metrics.json").exists()
    p = subprocess.run([*EVAL, *args, "--out", str(killed)], capture_output=True, text=True, env=ENV, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "resumed" in p.stdout
    lines = rows(samples)
    assert len(lines) == 96  # no duplicate, no loss
    assert keyed(samples) == keyed(full / "samples.jsonl")
    assert (killed / "metrics.json").read_text() == (full / "metrics.json").read_text()
    man = json.loads((killed / "manifest.json").read_text())
    assert man["status"] == "complete" and len(man["sessions"]) == 2
    assert "finished" not in man["sessions"][0]  # the killed session never got to record its end
    assert man["sessions"][1]["resumed_samples"] == partial


def test_resume_regenerates_a_partial_chunk_exactly(tmp_path, tiny_backend):
    full, cut = tmp_path / "full", tmp_path / "cut"
    run_eval(cfg(full, limit=6), progress=False, backend=tiny_backend)  # chunks of 2 problems (6 rows // n=3)
    shutil.copytree(full, cut)
    (cut / "metrics.json").unlink()
    lines = (cut / "samples.jsonl").read_bytes().splitlines(keepends=True)
    # keep the first chunk and 2 samples of the second, then a torn half line as a kill mid-write leaves it
    (cut / "samples.jsonl").write_bytes(b"".join(lines[:8]) + lines[8][:40])
    res = run_eval(cfg(cut, limit=6), progress=False, backend=tiny_backend)
    assert (res.resumed_samples, res.new_samples) == (8, 10)
    assert keyed(cut / "samples.jsonl") == keyed(full / "samples.jsonl")
    assert (cut / "metrics.json").read_text() == (full / "metrics.json").read_text()


def test_growing_n_or_limit_keeps_samples_and_other_settings_are_refused(tmp_path, tiny_backend):
    run_eval(cfg(tmp_path, n=2, limit=2), progress=False, backend=tiny_backend)
    before = keyed(tmp_path / "samples.jsonl")
    res = run_eval(cfg(tmp_path, n=3, limit=3), progress=False, backend=tiny_backend)
    assert (res.resumed_samples, res.new_samples) == (4, 5)
    after = keyed(tmp_path / "samples.jsonl")
    assert all(after[k] == v for k, v in before.items())
    with pytest.raises(InputError, match=r"holds another run \(sampling.seed 0 -> 1\); use --overwrite") as e:
        run_eval(cfg(tmp_path, seed=1), progress=False, backend=tiny_backend)
    assert "\n" not in str(e.value)
    res = run_eval(cfg(tmp_path, seed=1, overwrite=True, limit=1, n=1), progress=False, backend=tiny_backend)
    assert res.new_samples == 1 and len(rows(tmp_path / "samples.jsonl")) == 1


@pytest.mark.parametrize(
    ("setting", "first", "second"),
    [("dtype", "float32", "bfloat16"), ("device", "cpu", "cuda"), ("tensor_parallel_size", 1, 2)],
)
def test_resume_refuses_other_numerics(tmp_path, tiny_backend, setting, first, second):
    run_eval(cfg(tmp_path, n=1, limit=2, **{setting: first}), progress=False, backend=tiny_backend)
    man = json.loads((tmp_path / "manifest.json").read_text())
    assert man["identity"]["engine"][setting] == first
    assert "transformers" in man["identity"]["engine"]["version"]
    with pytest.raises(InputError, match=rf"holds another run \(engine.{setting} {first!r} -> {second!r}\)") as e:
        run_eval(cfg(tmp_path, n=1, limit=2, **{setting: second}), progress=False, backend=tiny_backend)
    assert "\n" not in str(e.value)
    res = run_eval(cfg(tmp_path, n=1, limit=2, **{setting: first}), progress=False, backend=tiny_backend)
    assert (res.resumed_samples, res.new_samples) == (2, 0)


def _cli(args: list[str]):
    app = typer.Typer()
    register(app)

    @app.callback()
    def _root() -> None:
        pass

    return CliRunner().invoke(app, ["eval", *args])


def test_cli_one_line_errors(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = ["--limit", "1", "--n", "1", "--max-tokens", "4", "--out", str(tmp_path / "x"), "--no-progress"]
    cases = [
        (["--model", "gpt-17"], "unknown model 'gpt-17'"),
        (["--model", "tiny-random", "--benchmark", "gsm9k"], "unknown benchmark 'gsm9k'"),
        (["--model", "tiny-random", "--benchmark", str(tmp_path / "nope.parquet")], "no such benchmark file"),
        (
            ["--model", "tiny-random", "--backend", "openai", "--base-url", f"http://127.0.0.1:{port}/v1"],
            f"cannot reach http://127.0.0.1:{port}/v1/models",
        ),
        (["--model", "tiny-random", "--preset", "fast"], "unknown preset 'fast'"),
        (["--model", "tiny-random", "--thinking", "maybe"], "thinking must be on, off or unset"),
    ]
    try:
        import vllm  # noqa: F401
    except ImportError:
        cases.append((["--model", "tiny-random", "--backend", "vllm"], "backend vllm needs vLLM"))
    import torch

    if not torch.cuda.is_available():
        cases.append((["--model", "tiny-random", "--device", "cuda"], "no GPU is visible"))
    for args, msg in cases:
        r = _cli([*args, *base])
        assert r.exit_code == 2, (args, r.output)
        err = r.stderr.strip()
        assert err.startswith("error:") and msg in err and "\n" not in err, (args, err)


def test_cli_prints_a_summary(tmp_path):
    r = _cli(
        [
            "--model",
            "tiny-random",
            "--limit",
            "2",
            "--n",
            "2",
            "--max-tokens",
            "8",
            "--out",
            str(tmp_path),
            "--no-progress",
        ]
    )
    assert r.exit_code == 0, r.output
    assert "avg@2" in r.stdout and "E per response" in r.stdout and "4 new + 0 resumed" in r.stdout
    r = _cli(
        ["--model", "tiny-random", "--limit", "2", "--n", "2", "--max-tokens", "8", "--out", str(tmp_path), "--json"]
    )
    assert r.exit_code == 0 and json.loads(r.stdout)["samples"] == 4
    assert isinstance(Sample, type)


def _documented_eval_commands() -> list[str]:
    import re
    import shlex

    text = (Path(__file__).resolve().parents[1] / "docs" / "eval.md").read_text()
    found = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith("sdlens eval "):
                found.append(shlex.split(line)[2:])
            elif "-m sdlens.cli eval " in line:
                found.append(shlex.split(line.split("-m sdlens.cli eval ", 1)[1]))
    return found


def test_documented_eval_commands_parse_and_plan(tmp_path):
    """Every `sdlens eval` line in docs/eval.md is a valid command: its --dry-run plan succeeds."""
    commands = _documented_eval_commands()
    assert len(commands) >= 4
    for k, args in enumerate(commands):
        r = _cli([*args, "--dry-run", "--out", str(tmp_path / str(k))])
        assert r.exit_code == 0, (args, r.output)
        plan = json.loads(r.stdout)
        assert plan["samples_wanted"] >= 1 and plan["samples_present"] == 0
        assert not (tmp_path / str(k)).exists()  # a dry run writes nothing


def test_the_backend_is_built_from_the_configs_fields_of_make_backends_names():
    import inspect

    from sdlens.generation import make_backend

    keywords = set(inspect.signature(make_backend).parameters) - {"backend", "model"}
    served = EvalConfig(backend="openai", concurrency=3, timeout=9.0, seed=4).backend_options()
    assert set(served) <= keywords
    assert (served["concurrency"], served["timeout"], served["seed"], served["batch_size"]) == (3, 9.0, 4, 32)
    local = EvalConfig(backend="transformers", batch_size=5, threads=1, dtype="fp32").backend_options()
    assert (local["batch_size"], local["threads"], local["dtype"]) == (5, 1, "fp32")
