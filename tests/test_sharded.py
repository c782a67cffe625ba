"""Scale-out for real on CPU (issue 18): FSDP2 and DeepSpeed ZeRO-3 over gloo with the chunked distillation loss,
resume of a sharded run after ``kill -9`` (EMA teacher included), and two "machines" on 127.0.0.1.

Every run is a real ``accelerate launch`` of ``sdlens train sdpo`` with 2 processes on the tiny model; the reference
is the same run under DDP (``configs/accelerate/cpu_ddp.yaml``), whose chunked loss equals TRL's full-logit loss
(``test_train_cli.py::test_two_processes_gloo_agree``). Same data, seeds and batch: sharding must not change the
losses, the gradient norms or the final weights."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("trl")

from test_train_cli import _env, _free_port, _sets
from test_train_helpers import kill_when

TESTS = Path(__file__).parent
CONFIGS = TESTS.parent / "configs" / "accelerate"
STEPS = 4


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    from test_train_helpers import shared_tiny

    return shared_tiny(tmp_path_factory)[0]


@pytest.fixture(scope="module")
def qa_data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sharded") / "qa.jsonl"
    rows = [{"question": "What is 2+2?", "answer": "first-wins"}, {"question": "What is 3+3?", "answer": "none"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _train_cmd(tiny: Path, qa_data: Path, out: Path, *, preset: str = "sdpo-paper", extra=(), resume=False) -> list:
    cmd = [
        "-m", "sdlens.cli", "train", "sdpo", "--preset", preset, "--model", str(tiny), "--data", str(qa_data),
        "--out", str(out), "--max-steps", str(STEPS), *_sets(["per_device_train_batch_size=1", *extra]),
    ]  # fmt: skip
    return [*cmd, "--resume"] if resume else cmd


def _launch_cmd(config: str, train: list, port: int | None = None) -> list:
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIGS / config)]
    return [*launch, "--main_process_port", str(port or _free_port()), *train]


def _run(cmd: list, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600, **kw)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _history(out: Path) -> list[tuple[int, float, float]]:
    """(step, loss, grad_norm) per optimizer step; the loss is gathered over the ranks by transformers."""
    state = json.loads((out / "trainer_state.json").read_text())
    return [(h["step"], h["loss"], h["grad_norm"]) for h in state["log_history"] if "loss" in h and "epoch" in h]


def _curve(history: list[tuple[int, float, float]]) -> list[float]:
    return [v for _, loss, norm in history for v in (loss, norm)]


def _max_weight_diff(a: Path, b: Path) -> float:
    from safetensors.torch import load_file

    wa, wb = load_file(str(a)), load_file(str(b))
    assert sorted(wa) == sorted(wb)
    return max(float((wa[k].float() - wb[k].float()).abs().max()) for k in wa)


def _assert_same_run(out: Path, reference: Path) -> None:
    got, ref = _history(out), _history(reference)
    assert [s for s, _, _ in got] == list(range(1, STEPS + 1)) == [s for s, _, _ in ref]
    assert any(loss > 0 for _, loss, _ in ref)  # something was distilled
    assert _curve(got) == pytest.approx(_curve(ref), rel=1e-4, abs=1e-7)
    assert _max_weight_diff(out / "model.safetensors", reference / "model.safetensors") <= 1e-5


@pytest.fixture(scope="module")
def ddp_reference(tiny, qa_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ddp") / "run"
    _run(_launch_cmd("cpu_ddp.yaml", _train_cmd(tiny, qa_data, out, extra=["save_strategy=no"])))
    return out


def test_fsdp2_chunked_loss_and_gradients_match_one_process(tiny, tmp_path):
    """The loss and every parameter's gradient of one batch split over 2 FSDP2 ranks = the same batch in one
    process (<= 1e-5), with the student's LM head unsharded in place ("root": it is a DTensor after the forward) and
    the teacher's all-gathered."""
    result = tmp_path / "result.json"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port())]
    _run([*cmd, str(TESTS / "fsdp_loss_worker.py"), str(tiny), str(result), "accelerate,root"])
    results = json.loads(result.read_text())
    assert sorted(results) == ["accelerate", "root"]
    for layout, r in results.items():
        assert r["world"] == 2 and r["params"] == r["ref_params"] > 10, layout
        assert r["loss_single"] > 1e-4 and r["head_grad_norm"] > 1e-4 and r["max_grad"] > 1e-4, layout
        assert abs(r["loss_sharded"] - r["loss_single"]) <= 1e-5, (layout, r)
        assert r["max_grad_diff"] <= 1e-5 and r["head_grad_diff"] <= 1e-5, (layout, r)
        assert r["teacher_head_sharded"] is True, layout  # TRL's teacher wrapping reshards: the all-gather path ran
        # accelerate keeps the [norm, lm_head] unit unsharded after the forward; a root-only wrap does not
        assert r["student_head_sharded"] is (layout == "root"), layout


def test_fsdp2_sdpo_paper_run_is_chunked(tiny, qa_data, tmp_path, ddp_reference):
    """The issue's "done when": 2-process FSDP2 `sdlens train sdpo --preset sdpo-paper` reaches its steps on the
    chunked path, with the same losses, gradient norms and final weights as DDP."""
    out = tmp_path / "fsdp"
    proc = _run(_launch_cmd("fsdp_cpu.yaml", _train_cmd(tiny, qa_data, out, extra=["save_strategy=no"])))
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["global_step"] == STEPS
    assert summary["checked"] is False and summary["reason"] == "sharded weights"  # really FSDP, not DDP
    assert summary["distillation_loss_path"] == "chunked", summary["distillation_loss_reason"]
    assert "FSDP2" in summary["distillation_loss_reason"] and summary["chunked_distillation_calls"] > 0
    assert "full-logit" not in proc.stderr
    _assert_same_run(out, ddp_reference)


def test_zero3_sdpo_run_is_chunked(tiny, qa_data, tmp_path, ddp_reference):
    """DeepSpeed ZeRO-3 on its CPU accelerator (gloo): the chunked loss runs inside the LM head's forward; same run
    as DDP."""
    pytest.importorskip("deepspeed")
    out = tmp_path / "zero3"
    _run(_launch_cmd("zero3_cpu.yaml", _train_cmd(tiny, qa_data, out, extra=["save_strategy=no"])))
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["global_step"] == STEPS
    assert summary["checked"] is False and summary["reason"] == "sharded weights"
    assert summary["distillation_loss_path"] == "chunked", summary["distillation_loss_reason"]
    assert "ZeRO-3" in summary["distillation_loss_reason"]
    _assert_same_run(out, ddp_reference)


def test_two_machines_on_loopback(tiny, qa_data, tmp_path, ddp_reference):
    """2 machines x 1 process on 127.0.0.1 (the multi-node command of docs/train.md): both finish the same steps
    with the same weights, and the weights of the 2-process run on one machine."""
    out, port = tmp_path / "nodes", _free_port()
    train = _train_cmd(tiny, qa_data, out, extra=["save_strategy=no"])
    procs = []
    for rank in (0, 1):
        cmd = [
            sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_machines", "2",
            "--num_processes", "2", "--machine_rank", str(rank), "--main_process_ip", "127.0.0.1",
            "--main_process_port", str(port), "--mixed_precision", "no", *train,
        ]  # fmt: skip
        log = open(tmp_path / f"machine{rank}.log", "w")  # noqa: SIM115 - closed below
        procs.append((subprocess.Popen(cmd, env=_env(), stdout=log, stderr=subprocess.STDOUT, text=True), log))
    for proc, log in procs:
        try:
            proc.wait(timeout=600)
        finally:
            log.close()
    logs = [(tmp_path / f"machine{r}.log").read_text() for r in (0, 1)]
    assert [p.returncode for p, _ in procs] == [0, 0], logs[0][-2000:] + logs[1][-2000:]
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["global_step"] == STEPS
    assert summary["checked"] and summary["ranks_agree"], summary  # both machines end with the same weights
    prints = summary["fingerprints"]
    assert len(prints) == 2 and prints[0] == prints[1] and prints[0][0] == STEPS
    reference = json.loads((ddp_reference / "run_summary.json").read_text())["fingerprints"][0]
    assert prints[0] == pytest.approx(reference, rel=1e-6)
    assert "done: 4 steps" in logs[0] and "done:" not in logs[1]  # the summary line comes from global rank 0


# ---------------------------------------------------------------- resume of a sharded run


def _ema_cmd(tiny, qa_data, out, resume=False) -> list:
    extra = ["save_steps=2", "per_device_train_batch_size=2"]
    return _train_cmd(tiny, qa_data, out, preset="sdpo-paper-ema", extra=extra, resume=resume)


@pytest.fixture(scope="module", params=["fsdp_cpu.yaml", pytest.param("zero3_cpu.yaml", marks=pytest.mark.slow)])
def sharded_ema_runs(request, tiny, qa_data, tmp_path_factory) -> dict[str, Path]:
    """An uninterrupted sharded EMA run (FSDP2; ZeRO-3 in the slow set), and the same run killed with SIGKILL once
    checkpoint-2 is complete (a copy of the killed folder is kept for the refusal test)."""
    config = request.param
    if config.startswith("zero3"):
        pytest.importorskip("deepspeed")
    root = tmp_path_factory.mktemp("sharded-resume")
    whole, killed = root / "whole", root / "killed"
    _run(_launch_cmd(config, _ema_cmd(tiny, qa_data, whole)))
    cmd = _launch_cmd(config, _ema_cmd(tiny, qa_data, killed))
    # own session: SIGKILL reaches the launcher, torchrun and both ranks at once (kill -9 of the whole job)
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    ckpt = killed / "checkpoint-2"
    kill_when(
        proc,
        lambda: (ckpt / "trainer_state.json").is_file() and (ckpt / "sdlens_teacher.safetensors").is_file(),
        group=True,
    )
    assert not (killed / "run_summary.json").exists()  # it really died mid-run
    copy = root / "killed-copy"
    shutil.copytree(killed, copy)
    return {"whole": whole, "killed": killed, "copy": copy, "config": config}


def test_sharded_resume_after_sigkill_continues_the_same_run(tiny, qa_data, sharded_ema_runs):
    whole, killed, config = sharded_ema_runs["whole"], sharded_ema_runs["killed"], sharded_ema_runs["config"]
    refused = subprocess.run(
        _launch_cmd(config, _ema_cmd(tiny, qa_data, killed)), env=_env(), capture_output=True, text=True
    )
    assert refused.returncode != 0 and "already holds a run" in refused.stderr  # no --resume: refused
    _run(_launch_cmd(config, _ema_cmd(tiny, qa_data, killed, resume=True)))
    summary = json.loads((killed / "run_summary.json").read_text())
    assert Path(summary["resumed_from"]).name in ("checkpoint-2", "checkpoint-4")
    assert summary["teacher_restored"] is True and summary["global_step"] == STEPS
    assert summary["distillation_loss_path"] == "chunked" and summary["reason"] == "sharded weights"
    # the same trajectory as the uninterrupted run: loss and gradient norm of every step, final student and teacher
    got, ref = _history(killed), _history(whole)
    assert [s for s, _, _ in got] == list(range(1, STEPS + 1))
    assert _curve(got) == pytest.approx(_curve(ref), rel=1e-5, abs=1e-8)
    assert _max_weight_diff(killed / "model.safetensors", whole / "model.safetensors") <= 1e-6
    teacher_diff = _max_weight_diff(killed / "teacher" / "model.safetensors", whole / "teacher" / "model.safetensors")
    assert teacher_diff <= 1e-6
    # the EMA teacher really moved away from the initial weights (a re-initialised one would not match)
    assert _max_weight_diff(whole / "teacher" / "model.safetensors", tiny / "model.safetensors") > 1e-6


def test_resume_refuses_when_the_teacher_cannot_be_restored(tiny, qa_data, sharded_ema_runs):
    """Never a silently re-initialised EMA teacher: a checkpoint without it, or with an unreadable one, is refused
    with one line (checked in one process: the refusal comes before any training)."""
    folder = sharded_ema_runs["copy"]
    base = [sys.executable, *_ema_cmd(tiny, qa_data, folder, resume=True)]
    teachers = sorted(folder.glob("checkpoint-*/sdlens_teacher.safetensors"))
    assert teachers
    for t in teachers:
        t.write_bytes(b"not a safetensors file")
    bad = subprocess.run(base, env=_env(), capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2, bad.stderr[-2000:]
    lines = [x for x in bad.stderr.splitlines() if x.startswith("error:")]
    assert len(lines) == 1 and "cannot restore the EMA teacher" in lines[0] and "refusing to resume" in lines[0]
    for t in teachers:
        t.unlink()
    gone = subprocess.run(base, env=_env(), capture_output=True, text=True, timeout=300)
    assert gone.returncode == 2, gone.stderr[-2000:]
    lines = [x for x in gone.stderr.splitlines() if x.startswith("error:")]
    assert len(lines) == 1 and "holds the EMA teacher" in lines[0] and "refusing to resume" in lines[0]
    assert not (folder / "run_summary.json").exists()


# ---------------------------------------------------------------- vLLM in the loop

VLLM_PY = TESTS.parent / ".venv-vllm" / "bin" / "python"


def test_vllm_server_mode_without_cuda_is_refused_in_one_line(tiny, qa_data, tmp_path):
    """TRL 1.16 syncs weights into a vLLM server only over NCCL from a CUDA device: on a CPU-only machine sdlens says
    so before loading any model, instead of TRL's NotImplementedError from inside the trainer's constructor."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: server mode is allowed")
    out = tmp_path / "vllm"
    cmd = [sys.executable, *_train_cmd(tiny, qa_data, out), "--use-vllm", "--vllm-mode", "server"]
    cmd += ["--vllm-server-base-url", "http://127.0.0.1:9"]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert len(lines) == 1 and "field 'vllm_mode': needs a CUDA device" in lines[0] and "NCCL" in lines[0]
    assert not out.exists()  # refused before the run folder


_VLLM_CLIENT = """
import json, sys
from trl.generation.vllm_client import VLLMClient
client = VLLMClient(base_url=sys.argv[1], connection_timeout=10)
info = client.get_server_info()
out = client.generate(["What is 2+3? Answer:"], n=2, temperature=1.0, max_tokens=8, logprobs=0)
greedy = [client.generate(["What is 2+3? Answer:"], temperature=0.0, max_tokens=8)["completion_ids"] for _ in "ab"]
try:
    client.init_communicator(device="cpu")
    sync = "no error"
except NotImplementedError as e:
    sync = "NotImplementedError: " + str(e)
print(json.dumps({"transfer": info.get("weight_transfer_config"), "out": out, "greedy": greedy, "sync": sync}))
"""


@pytest.mark.slow
def test_vllm_cpu_server_generates_for_trl_but_weight_sync_needs_cuda(tmp_path):
    """TRL's own VLLMClient (what `--use-vllm --vllm-mode server` uses) against a real vLLM CPU server with the NCCL
    weight-transfer engine configured, serving SmolLM2: server info and generation with log-probs work; the weight
    sync is where it stops (NotImplementedError naming CUDA). Start-up 40-110 s."""
    if not VLLM_PY.exists():
        pytest.skip(".venv-vllm is absent: run `make setup-vllm`")
    from sdlens.models import resolve_model

    path = resolve_model("smollm2-135m").path
    port = _free_port()
    env = {**_env(), "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "0-1", "VLLM_USE_AOT_COMPILE": "0"}
    env["VLLM_SERVER_DEV_MODE"] = "1"  # TRL's weight-sync endpoints
    log = open(tmp_path / "vllm.log", "w")  # noqa: SIM115 - closed below
    serve = [
        str(VLLM_PY), "-m", "vllm.entrypoints.openai.api_server", "--model", path, "--host", "127.0.0.1",
        "--port", str(port), "--max-model-len", "1024", "--weight-transfer-config", '{"backend": "nccl"}',
    ]  # fmt: skip
    server = subprocess.Popen(serve, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        import urllib.request

        deadline = time.time() + 400
        while True:
            try:
                urllib.request.urlopen(url + "/v1/models", timeout=2).close()
                break
            except OSError:
                if server.poll() is not None or time.time() > deadline:
                    pytest.fail("vLLM server did not start:\n" + (tmp_path / "vllm.log").read_text()[-3000:])
                time.sleep(2)
        proc = subprocess.run([str(VLLM_PY), "-c", _VLLM_CLIENT, url], env=env, capture_output=True, text=True,
                              timeout=300)  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        r = json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()
    assert r["transfer"] and r["transfer"].get("backend") == "nccl"
    completions = r["out"]["completion_ids"]
    assert len(completions) == 2 and all(0 < len(c) <= 8 for c in completions)
    assert r["greedy"][0] == r["greedy"][1] and len(r["greedy"][0][0]) > 0  # greedy: the same completion twice
    assert all(lp[0] <= 0.0 for lp in r["out"]["logprobs"][0])  # the sampled tokens' log-probs
    assert r["sync"].startswith("NotImplementedError") and "CUDA" in r["sync"], r["sync"]
