"""``sdlens train`` / ``sdlens models tiny`` end to end: the CLI, a 2-process gloo run under ``accelerate launch``,
resume after SIGKILL, and (slow) SmolLM2."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

pytest.importorskip("trl")

from sdlens.cli.train import register
from test_train_helpers import kill_when

TESTS = Path(__file__).parent
SMALL = [
    "prompts_per_step=2",
    "mini_batches_per_step=2",
    "num_generations=4",
    "max_completion_length=12",
    "learning_rate=1e-3",
    "warmup_steps=0",
    "gradient_checkpointing=false",
    "reward=test_train_helpers:first_wins",
]


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    env.update(OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1", TRL_EXPERIMENTAL_SILENCE="1")
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _sets(extra=()) -> list[str]:
    out = []
    for s in [*SMALL, *extra]:
        out += ["--set", s]
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    sys.path.insert(0, str(TESTS))
    from test_train_helpers import shared_tiny

    return shared_tiny(tmp_path_factory)[0]


@pytest.fixture(scope="module")
def qa_data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "qa.jsonl"
    rows = [{"question": "What is 2+2?", "answer": "first-wins"}, {"question": "What is 3+3?", "answer": "none"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_dry_run_prints_student_and_teacher_prompts_preopened(tmp_path, qa_data):
    model = tmp_path / "preopen"
    res = CliRunner().invoke(
        _app(),
        [
            "models",
            "tiny",
            "--out",
            str(model),
            "--arch",
            "qwen2",
            "--chat-template",
            "preopen",
            "--vocab",
            "300",
            "--mean-length",
            "0",
        ],
    )
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout.strip().splitlines()[-1])
    assert (info["arch"], info["vocab_size"], info["chat_template"]) == ("qwen2", 300, "preopen")
    assert "calibration" not in info and (model / "config.json").is_file()
    args = ["train", "sdpo", "--preset", "sdpo-paper-nothink", "--model", str(model), "--data", str(qa_data)]
    res = CliRunner().invoke(_app(), [*args, "--dry-run", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["student_prompt"].endswith("<|im_start|>assistant\n<think>\n")  # a pre-opened template
    demo = out["example_demonstration"]
    assert not demo.startswith("<think>") and "</think>" in demo  # shaped like this template's responses
    teacher = out["teacher_prompt"]
    assert "Correct solution:\n\n[its answer] \\boxed{first-wins}\n\nCorrectly solve the original question." in teacher
    assert "sibling's reasoning" not in teacher  # c = s\think removed it although there is no opening tag
    assert out["notes"] == ["prompts_per_step 256 -> 2: the data has only 2 rows"]
    res = CliRunner().invoke(_app(), [*args, "--dry-run"])
    assert res.exit_code == 0 and "teacher prompt" in res.stdout and "distillation_alpha = 0.5" in res.stdout
    bad = CliRunner().invoke(_app(), [*args, "--dry-run", "--set", "nope=1"])
    assert bad.exit_code == 2 and "unknown config key 'nope'" in bad.output


def _ddp_sdpo(tiny, qa_data, out: Path, extra=()) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--cpu",
        "--main_process_port", str(_free_port()), "-m", "sdlens.cli",
        "train", "sdpo", "--preset", "sdpo-paper", "--model", str(tiny), "--data", str(qa_data), "--out", str(out),
        "--max-steps", "4", *_sets(["per_device_train_batch_size=1", "save_strategy=no", *extra]),
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _distill_losses(out: Path) -> list[float]:
    state = json.loads((out / "trainer_state.json").read_text())
    return [h["self_distillation/distillation_loss"] for h in state["log_history"] if "epoch" in h and "loss" in h]


def test_two_processes_gloo_agree(tiny, qa_data, tmp_path):
    out = tmp_path / "ddp"
    proc = _ddp_sdpo(tiny, qa_data, out)
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["global_step"] == 4
    # the chunked loss ran under DDP (transformers turns find_unused_parameters on without gradient checkpointing)
    assert summary["chunked_distillation_calls"] > 0
    assert summary["checked"] and summary["ranks_agree"], summary
    assert len(summary["fingerprints"]) == 2 and summary["fingerprints"][0] == summary["fingerprints"][1]
    assert "ranks agree: True" in proc.stdout
    # accelerate 1.x itself starts one process for --cpu; sdlens relaunched 2 (torch.distributed.run)
    assert "relaunching 2 gloo processes" in proc.stderr
    args = json.loads((out / "trl_args.json").read_text())
    # 2 prompts x 4 rollouts = 8 per rollout batch, 2 optimizer steps of 4 = 2 processes x 1 x 2 accumulation
    assert (args["gradient_accumulation_steps"], args["steps_per_generation"]) == (2, 4)
    prompts = [json.loads(x) for x in (out / "teacher_prompts.jsonl").read_text().splitlines()]
    assert any(p["has_teacher"] and "Correct solution:" in p["teacher_prompt"] for p in prompts)
    state = json.loads((out / "trainer_state.json").read_text())
    # the teacher context was built across both ranks: 3 of 8 rollouts have a successful sibling
    fractions = [h["self_distillation/reprompt_sample_fraction"] for h in state["log_history"] if "epoch" in h and
                 "self_distillation/reprompt_sample_fraction" in h]  # fmt: skip
    assert fractions and all(f == pytest.approx(3 / 8) for f in fractions)
    assert (out / "model.safetensors").is_file()

    # the same run through TRL's full-logit loss: same distillation losses and the same final weights
    full = tmp_path / "ddp-full"
    _ddp_sdpo(tiny, qa_data, full, ["chunked_distillation=false"])
    reference = json.loads((full / "run_summary.json").read_text())
    assert not reference["chunked_distillation_calls"]  # TRL's own trainer class: no chunked losses
    chunked_losses, full_losses = _distill_losses(out), _distill_losses(full)
    assert len(chunked_losses) == 4 and any(x > 0 for x in full_losses)
    assert chunked_losses == pytest.approx(full_losses, rel=1e-4, abs=1e-7)
    assert summary["fingerprints"][0] == pytest.approx(reference["fingerprints"][0], rel=1e-5)


def test_resume_after_sigkill(tiny, qa_data, tmp_path):
    out = tmp_path / "killed"
    base = [
        sys.executable, "-m", "sdlens.cli", "train", "sdpo", "--preset", "sdpo-paper-ema", "--model", str(tiny),
        "--data", str(qa_data), "--out", str(out), "--max-steps", "8",
        *_sets(["per_device_train_batch_size=2", "save_steps=2"]),
    ]  # fmt: skip
    proc = subprocess.Popen(base, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ckpt = out / "checkpoint-2"
    kill_when(proc, lambda: (ckpt / "trainer_state.json").is_file() and (ckpt / "sdlens_teacher.safetensors").is_file())
    assert not (out / "run_summary.json").exists()  # it really died mid-run
    # without --resume the folder is refused
    refused = subprocess.run(base, env=_env(), capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "already holds a run" in refused.stderr
    done = subprocess.run([*base, "--resume"], env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "run_summary.json").read_text())
    resumed = int(Path(summary["resumed_from"]).name.split("-")[1])
    assert resumed >= 2 and summary["global_step"] == 8 and summary["teacher_restored"] is True
    state = json.loads((out / "trainer_state.json").read_text())
    steps = [h["step"] for h in state["log_history"] if "loss" in h]
    assert steps[-1] == 8 and set(range(1, 9)) <= set(steps)  # history kept across the kill
    assert (out / "teacher" / "model.safetensors").is_file()  # the final EMA teacher


DETECTOR = "test_train_helpers:suppressing_from_step_2"


def test_resume_keeps_the_mix_switch(tiny, qa_data, tmp_path):
    """Killed after the detector switched the GRPO mix on (step 2), the resumed run keeps w = 0.5 and the step the
    switch fired at; it neither distils at w = 1 again nor re-fires the switch at the resume step."""
    out = tmp_path / "mix"
    base = [
        sys.executable, "-m", "sdlens.cli", "train", "sdpo", "--preset", "sdpo-grpo-mix-auto",
        "--model", str(tiny), "--data", str(qa_data), "--out", str(out), "--max-steps", "6",
        *_sets(["per_device_train_batch_size=2", "save_steps=2", f"mix_detector={DETECTOR}"]),
    ]  # fmt: skip
    proc = subprocess.Popen(base, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    state_file = out / "checkpoint-4" / "sdlens_mitigations.json"
    kill_when(proc, state_file.is_file)
    assert json.loads(state_file.read_text())["mix"] == {"switched_at": 2, "weight": 0.5}
    assert not (out / "run_summary.json").exists()
    done = subprocess.run([*base, "--resume"], env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "run_summary.json").read_text())
    resumed = int(Path(summary["resumed_from"]).name.split("-")[1])
    assert resumed >= 4 and summary["global_step"] == 6
    logs = [h for h in json.loads((out / "trainer_state.json").read_text())["log_history"] if "loss" in h]
    weights = {h["step"]: h["mitigation/distillation_weight"] for h in logs}
    assert [weights[s] for s in range(resumed + 1, 7)] == [0.5] * (6 - resumed)
    assert weights[1] == weights[2] == 1.0 and weights[3] == 0.5  # before the kill, as logged then
    assert summary["mitigations"]["mix_switched_at_step"] == 2
    assert summary["mitigation_state_restored"]["mix"]["switched_at"] == 2
    # a checkpoint without the state is refused in one line rather than resumed with the switch reset
    (out / f"checkpoint-{resumed}" / "sdlens_mitigations.json").unlink()
    (out / "run_summary.json").unlink()
    for later in out.glob("checkpoint-*"):
        if int(later.name.split("-")[1]) > resumed:
            shutil.rmtree(later)
    refused = subprocess.run([*base, "--resume"], env=_env(), capture_output=True, text=True, timeout=600)
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert "holds no sdlens_mitigations.json" in refused.stderr and refused.stderr.count("error:") == 1


@pytest.mark.slow
def test_smollm2_two_sdpo_steps(tmp_path):
    from sdlens.train.config import resolve_config
    from sdlens.train.runner import run_train

    data = tmp_path / "qa.jsonl"
    data.write_text(json.dumps({"question": "What is 2+3?", "answer": "5"}) + "\n")
    sets = ["prompts_per_step=1", "mini_batches_per_step=1", "num_generations=4", "per_device_train_batch_size=4"]
    sets += ["max_completion_length=24", "save_strategy=no", "reward=math-verify", "reward_workers=1"]
    cfg = resolve_config(
        "sdpo",
        preset="sdpo-paper",
        overrides={"model": "smollm2-135m", "data": str(data), "out": str(tmp_path / "smol"), "trl.max_steps": 2},
        sets=sets,
    )
    summary = run_train(cfg)
    assert summary["global_step"] == 2 and summary["ranks_agree"]
    assert (tmp_path / "smol" / "model.safetensors").is_file()


def test_documented_quick_commands_run(tmp_path, monkeypatch):
    """docs/train.md's first command block: the tiny model, the dry run and --help-config run as written."""
    import re
    import shlex

    doc = (TESTS.parent / "docs" / "train.md").read_text()
    block = re.findall(r"```bash\n(.*?)```", doc, flags=re.S)[0].replace("\\\n", " ")
    commands = [line.split("  #")[0].strip() for line in block.splitlines()]
    quick = [
        c for c in commands if c.startswith("sdlens ") and ("models tiny" in c or "--dry-run" in c or "config" in c)
    ]
    assert len(quick) >= 3
    monkeypatch.chdir(tmp_path)
    for command in quick:
        argv = shlex.split(command)
        res = CliRunner().invoke(_app(), argv[1:])
        assert res.exit_code == 0, f"{command}\n{res.output}"
        assert res.stdout.strip()
