"""EpistemicCallback inside real tiny TRL runs (SDPO via `sdlens train`'s runner, GRPO with early stopping), and the
teacher-student gap on a hand-built distillation batch."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("trl")
torch = pytest.importorskip("torch")

from sdlens.epistemic.count import count_texts  # noqa: E402
from sdlens.epistemic.lexicon import load_lexicon  # noqa: E402
from sdlens.models import make_tiny_tokenizer  # noqa: E402
from sdlens.monitor import Detector, DetectorConfig, monitor_trainer  # noqa: E402
from sdlens.monitor.mechanism import GapAccumulator, gap_sums  # noqa: E402
from sdlens.train.config import resolve_config  # noqa: E402
from sdlens.train.rewards import completion_text  # noqa: E402
from sdlens.train.runner import run_train  # noqa: E402

TESTS = Path(__file__).parent
sys.path.insert(0, str(TESTS))

SMALL = [
    "prompts_per_step=2",
    "mini_batches_per_step=2",
    "num_generations=4",
    "per_device_train_batch_size=2",
    "max_completion_length=12",
    "learning_rate=1e-3",
    "warmup_steps=0",
    "save_strategy=no",
    "gradient_checkpointing=false",
    "reward=test_train_helpers:first_wins",
]
# what every record with rollouts carries (and report_to gets under epistemic/)
EXPECTED = [
    "hedges_per_response",
    "hedges_per_1k_tokens",
    "share_with_any",
    "mean_length",
    "accuracy",
    "per_word/wait",
    "per_word/maybe",
    "thinking/hedges_per_response",
    "answer/hedges_per_1k_tokens",
    "correct/mean_length",
    "incorrect/hedges_per_1k_tokens",
]
# a lexicon that random byte-level text hits often: lower-case letters as substrings (one token each)
LETTERS = (
    'name = "letters"\nmode = "substring"\nwords = ['
    + ", ".join(f'"{c}"' for c in "abcdefghijklmnopqrstuvwxyz")
    + "]\n"
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    from test_train_helpers import shared_tiny

    return shared_tiny(tmp_path_factory)[0]


@pytest.fixture(scope="module")
def qa_data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "qa.jsonl"
    rows = [{"question": "What is 2+2?", "answer": "first-wins"}, {"question": "What is 3+3?", "answer": "none"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _cfg(algo, tiny, data, out, steps, extra=()):
    return resolve_config(
        algo,
        preset=f"{algo}-paper",
        overrides={"model": str(tiny), "data": str(data), "out": str(out), "trl.max_steps": steps},
        sets=[*SMALL, *extra],
    )


def _records(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_sdpo_run_logs_epistemic_keys_and_the_mechanism(tiny, qa_data, tmp_path):
    letters = tmp_path / "letters.toml"
    letters.write_text(LETTERS)
    seen: dict[str, list] = {"rollouts": [], "events": []}

    def hook(trainer):
        # a second monitor with the letters lexicon (its own folder), and independent captures of what it sees
        monitor_trainer(trainer, out_dir=str(tmp_path / "letters"), lexicon=str(letters))
        trainer.distillation_listeners.append(seen["events"].append)
        inner = trainer._calculate_rewards

        def capture(inputs, prompts, completions, completion_ids_list):
            rewards = inner(inputs, prompts, completions, completion_ids_list)
            seen["rollouts"].append(([completion_text(c) for c in completions], completion_ids_list, rewards.tolist()))
            return rewards

        trainer._calculate_rewards = capture
        seen["trainer"] = trainer

    out = tmp_path / "run"
    summary = run_train(_cfg("sdpo", tiny, qa_data, out, 4), trainer_hook=hook)
    assert summary["global_step"] == 4 and summary["epistemic"]["state"] == "ok"

    # the default monitor (words lexicon): one record per logging step that had new rollouts, with every key
    records = _records(out / "epistemic.jsonl")
    with_rollouts = [r for r in records if r.get("n_responses")]
    assert [r["step"] for r in with_rollouts] == [1, 3]  # a rollout batch feeds 2 optimizer steps
    assert len(seen["rollouts"]) == 2
    lex = load_lexicon("words")
    for rec, (texts, ids, rewards) in zip(with_rollouts, seen["rollouts"], strict=True):
        assert all(k in rec for k in EXPECTED), sorted(set(EXPECTED) - set(rec))
        assert rec["n_responses"] == len(texts) == 8 and rec["units"] == "tokens"
        assert rec["mean_length"] == pytest.approx(sum(map(len, ids)) / len(ids))
        assert rec["hedges_per_response_words"] == pytest.approx(count_texts(texts, lex).totals.mean())
        assert rec["accuracy"] == pytest.approx(sum(r[0] > 0.5 for r in rewards) / len(rewards))
        assert rec["detector"]["state"] == "ok"
    # the same numbers went through the trainer's own logging (report_to reads log_history's source)
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    by_step = {h["step"]: h for h in history if "loss" in h}
    for rec in with_rollouts:
        logged = by_step[rec["step"]]
        assert logged["epistemic/mean_length"] == pytest.approx(rec["mean_length"])
        assert logged["epistemic/detector/state"] == 0.0
        assert all(f"epistemic/{k}" in logged for k in EXPECTED if rec[k] is not None)

    # the letters monitor: hedge positions exist in random text, and its gap numbers match a recomputation from the
    # distillation passes the trainer really ran (position is a hedge iff its byte is a lower-case letter)
    tok = seen["trainer"].processing_class
    letter_records = {r["step"]: r for r in _records(tmp_path / "letters" / "epistemic.jsonl") if r.get("mechanism")}
    assert letter_records and seen["events"]
    for step, rec in letter_records.items():
        events = [e for e in seen["events"] if e.step == step - 1]  # passes of optimizer step `step`
        gh = nh = go = no = lh = lt = 0.0
        for e in events:
            for b in range(e.completion_ids.shape[0]):
                for t in range(e.completion_ids.shape[1]):
                    if e.loss_mask[b, t] <= 0:
                        continue
                    piece = tok.decode([int(e.completion_ids[b, t])])
                    gap = float(e.teacher_logps[b, t] - e.student_logps[b, t])
                    loss = float(e.per_token_loss[b, t])
                    lt += loss
                    if len(piece) == 1 and piece.lower() in "abcdefghijklmnopqrstuvwxyz":  # the paper's lower()
                        gh, nh, lh = gh + gap, nh + 1, lh + loss
                    else:
                        go, no = go + gap, no + 1
        m = rec["mechanism"]
        assert m["n_hedge_positions"] == nh and m["n_positions"] == nh + no
        if nh:
            assert m["gap_hedge"] == pytest.approx(gh / nh, abs=1e-5)
            assert m["hedge_loss_share"] == pytest.approx(lh / lt, abs=1e-5)
        assert m["gap_other"] == pytest.approx(go / no, abs=1e-5)
    assert sum(r["mechanism"]["n_hedge_positions"] for r in letter_records.values()) > 0


def test_grpo_run_stops_on_suppression(tiny, qa_data, tmp_path, caplog):
    letters = tmp_path / "letters.toml"
    letters.write_text(LETTERS)

    def hook(trainer):
        # the baseline of a run that hedged a lot (as a resumed run replays it), then live rollouts of random text
        # hedge far less: the real detector must call it suppressing and the trainer must stop
        mon = monitor_trainer(trainer, out_dir=str(tmp_path / "m"), lexicon=str(letters), stop_on_suppression=True)
        mon.detector = Detector(DetectorConfig(baseline_steps=8, recent=1, confirm=1))
        for step in range(8):
            mon.detector.update(5000.0 - step, 500.0, -8 + step)  # already drifting down

    out = tmp_path / "grpo"
    with caplog.at_level("WARNING", logger="sdlens.monitor"):
        summary = run_train(_cfg("grpo", tiny, qa_data, out, 6, ["epistemic_monitor=false"]), trainer_hook=hook)
    lines = [r.getMessage() for r in caplog.records if r.name == "sdlens.monitor"]
    assert any(m.startswith("epistemic monitor: step 1: suppressing - hedge rate down") for m in lines), lines
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    assert [h["epistemic/detector/changed"] for h in history if "epistemic/detector/state" in h] == [1.0]
    assert any("stopping training at step 1" in m for m in lines), lines
    assert summary["epistemic"] is None  # the default monitor was switched off
    records = _records(tmp_path / "m" / "epistemic.jsonl")
    assert records[0]["detector"]["state"] == "suppressing" and records[0]["mechanism"] is None  # GRPO: no distill
    assert summary["global_step"] == records[0]["step"] == 1  # stopped at the first logging step, not 6


@dataclass
class _Pass:
    completion_ids: torch.Tensor
    loss_mask: torch.Tensor
    student_logps: torch.Tensor
    teacher_logps: torch.Tensor
    per_token_loss: torch.Tensor
    step: int = 0


def test_gap_on_a_hand_built_batch():
    tok = make_tiny_tokenizer()  # one token per byte: "maybe" is 5 positions
    texts = ["so wait, x", "maybe it is 4!"]
    rows = [tok.encode(t, add_special_tokens=False) for t in texts]
    width = max(map(len, rows))
    pad = tok.pad_token_id
    ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
    mask = torch.tensor([[1.0] * len(r) + [0.0] * (width - len(r)) for r in rows])
    # hedge characters by hand: "wait" at 3..6 of row 0, "maybe" at 0..4 of row 1
    hedge = torch.zeros_like(mask, dtype=torch.bool)
    hedge[0, 3:7] = True
    hedge[1, 0:5] = True
    g = torch.Generator().manual_seed(0)
    student = -torch.rand(ids.shape, generator=g)
    teacher = student - 2.0 * hedge - 0.1 * (~hedge)  # the teacher pushes hedges down by 2, the rest by 0.1
    loss = torch.rand(ids.shape, generator=g) * mask
    event = _Pass(ids, mask, student, teacher, loss)

    from sdlens.epistemic.tokens import hedge_position_mask

    found = hedge_position_mask(ids, tok) & mask.bool()
    assert torch.equal(found, hedge)
    assert "".join(tok.decode([int(i)]) for i in ids[found]) == "waitmaybe"  # the positions hold the words
    res = GapAccumulator.result(gap_sums(event, tok))
    assert res["gap_hedge"] == pytest.approx(-2.0) and res["gap_other"] == pytest.approx(-0.1)
    assert res["gap_difference"] == pytest.approx(-1.9)
    assert res["n_hedge_positions"] == 9 and res["n_positions"] == int(mask.sum())
    assert res["hedge_loss_share"] == pytest.approx(float(loss[hedge].sum() / loss.sum()))
    assert res["hedge_token_share"] == pytest.approx(9 / float(mask.sum()))
    # padding never counts, even when the pad id is a hedge piece in another row's text
    acc = GapAccumulator(tok)
    acc(event)
    acc(event)
    assert acc.passes == 2 and GapAccumulator.result(acc.sums)["n_positions"] == 2 * int(mask.sum())


@pytest.mark.slow
def test_two_processes_gather_rollouts_and_write_once(tiny, qa_data, tmp_path):
    import os
    import socket
    import subprocess

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sets = []
    for s in [*SMALL, "per_device_train_batch_size=1"]:
        sets += ["--set", s]
    out = tmp_path / "ddp"
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--cpu", "--main_process_port",
        str(port), "-m", "sdlens.cli", "train", "sdpo", "--model", str(tiny), "--data", str(qa_data),
        "--out", str(out), "--max-steps", "4", *sets,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    env.update(OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1", TRL_EXPERIMENTAL_SILENCE="1")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "world size 2" in proc.stdout
    records = _records(out / "epistemic.jsonl")
    assert [r["step"] for r in records] == sorted({r["step"] for r in records})  # one writer, one line per step
    with_rollouts = [r for r in records if r.get("n_responses")]
    # 2 prompts x 4 rollouts per batch, 4 generated on each rank: every record holds both ranks' rollouts
    assert [r["n_responses"] for r in with_rollouts] == [8, 8]
    # the mechanism sums were reduced across the ranks without a hang, and hold positions
    assert all(r["mechanism"]["n_positions"] > 0 for r in records if r.get("mechanism"))
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    assert sum("epistemic/hedges_per_1k_tokens" in h for h in history) == 2


@pytest.mark.slow
def test_resumed_run_replays_the_detector(tiny, qa_data, tmp_path):
    out = tmp_path / "run"
    first = run_train(_cfg("sdpo", tiny, qa_data, out, 2, ["save_strategy=steps", "save_steps=2"]))
    assert first["epistemic"]["n_steps"] == 1  # rollouts at step 1 only (a batch feeds 2 optimizer steps)
    resumed = run_train(_cfg("sdpo", tiny, qa_data, out, 4, ["save_strategy=no", "resume=true"]))
    assert resumed["resumed_from"].endswith("checkpoint-2")
    # the detector holds the first run's step and the resumed run's own
    assert resumed["epistemic"]["n_steps"] == 2
    steps = [r["step"] for r in _records(out / "epistemic.jsonl") if r.get("n_responses")]
    assert steps == [1, 3]


@pytest.mark.slow
def test_full_logit_fallback_gives_the_same_mechanism_numbers(tiny, qa_data, tmp_path):
    """distillation_weight 0.5, or chunked_distillation off, sends SdlensSDPOTrainer down TRL's full-logit path;
    before the first optimizer update every path sees the same model and rollouts, so the step-1 mechanism record
    must agree with the chunked one."""
    letters = tmp_path / "letters.toml"
    letters.write_text(LETTERS)
    mechanism = {}
    variants = (("chunked", []), ("fallback", ["distillation_weight=0.5"]), ("off", ["chunked_distillation=false"]))
    for name, extra in variants:
        holder: list = []

        def hook(trainer, name=name, holder=holder):
            monitor_trainer(trainer, out_dir=str(tmp_path / name / "letters"), lexicon=str(letters))
            holder.append(trainer)

        run_train(_cfg("sdpo", tiny, qa_data, tmp_path / name, 1, extra), trainer_hook=hook)
        if name != "chunked":
            assert holder[0].chunked_calls == 0  # it really took TRL's path
        recs = _records(tmp_path / name / "letters" / "epistemic.jsonl")
        mechanism[name] = recs[0]["mechanism"]
    a = mechanism["chunked"]
    for b in (mechanism["fallback"], mechanism["off"]):
        assert a["n_positions"] == b["n_positions"] > 0 and a["n_hedge_positions"] == b["n_hedge_positions"]
        for key in ("gap_hedge", "gap_other", "hedge_loss_share"):
            if a[key] is not None:
                assert b[key] == pytest.approx(a[key], rel=1e-3, abs=1e-5), key


def test_plain_trl_script_two_lines(tiny, tmp_path):
    """A user's own GRPOTrainer: `monitor_trainer(trainer)` is all it takes; the log goes to args.output_dir."""
    import datasets
    from trl import GRPOConfig, GRPOTrainer

    def reward(completions, **kwargs):
        return [float("wait" in completion_text(c)) for c in completions]

    ds = datasets.Dataset.from_dict({"prompt": ["Compute 2 plus 2.", "Compute 3 plus 3."]})
    args = GRPOConfig(
        output_dir=str(tmp_path / "trl"),
        max_steps=1,
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=8,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
    )
    trainer = GRPOTrainer(model=str(tiny), reward_funcs=[reward], args=args, train_dataset=ds)
    mon = monitor_trainer(trainer)
    trainer.train()
    (rec,) = _records(tmp_path / "trl" / "epistemic.jsonl")
    assert rec["step"] == 1 and rec["n_responses"] == 4 and rec["mechanism"] is None
    assert mon.records == [rec] and trainer.epistemic_monitor is mon
    assert any("epistemic/hedges_per_1k_tokens" in h for h in trainer.state.log_history)
    with pytest.raises(TypeError, match="does not expose its completions"):
        monitor_trainer(object())
