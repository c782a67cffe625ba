"""`sdlens monitor` offline: crafted verl dumps, a run's epistemic.jsonl, per-checkpoint samples, TRL completions."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sdlens.cli import app
from sdlens.errors import InputError
from sdlens.monitor.offline import read_run
from sdlens.monitor.simulate import SimConfig, write_verl_dump
from sdlens.schema import Sample, write_jsonl

runner = CliRunner()
HAS_MPL = importlib.util.find_spec("matplotlib") is not None  # --plot needs the report extra


def _dump(folder: Path, steps: dict[int, list[tuple[str, float]]], *, with_step: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for step, rows in steps.items():
        lines = []
        for i, (text, score) in enumerate(rows):
            rec = {"input": f"q{i % 2}", "output": text, "score": score}
            if with_step:
                rec["step"] = step
            lines.append(json.dumps(rec))
        (folder / f"{step}.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def test_crafted_verl_dump_per_step_numbers(tmp_path):
    # step 1: 3 responses, 10 words, hedges (words lexicon) 3; "unlikely" is a paper hit only
    # step 2: 2 responses, 6 words, 0 word hedges
    steps = {
        1: [("Wait, maybe x", 1.0), ("so unlikely here", 0.0), ("hmm four five six", 1.0)],
        2: [("x is two", 1.0), ("the answer 3", 0.0)],
    }
    res = read_run(_dump(tmp_path / "verl", steps, with_step=False))  # steps from the file names
    assert res["source"] == "verl-dump"
    s1, s2 = res["steps"]
    assert (s1["step"], s2["step"]) == (1, 2)
    assert s1["n_responses"] == 3 and s1["units"] == "words"
    assert s1["hedges_per_response"] == pytest.approx(4 / 3)  # paper: wait, maybe, likely (in unlikely), hmm
    assert s1["hedges_per_response_words"] == pytest.approx(1.0)
    assert s1["hedges_per_1k_tokens"] == pytest.approx(1000 * 3 / 10)
    assert s1["share_with_any"] == pytest.approx(2 / 3)
    assert s1["mean_length"] == pytest.approx(10 / 3)
    assert s1["accuracy"] == pytest.approx(2 / 3)
    assert s1["correct/hedges_per_1k_tokens"] == pytest.approx(1000 * 3 / 7)
    assert s1["incorrect/hedges_per_1k_tokens"] == 0.0
    assert s1["per_word/wait"] == pytest.approx(1 / 3) and s1["per_word/likely"] == 0.0
    assert s2["hedges_per_1k_tokens"] == 0.0 and s2["accuracy"] == 0.5
    assert res["verdict"]["state"] == "ok" and "baseline" in res["verdict"]["reason"]


def test_thinking_and_answer_split(tmp_path):
    steps = {1: [("<think>wait, perhaps two</think> The answer is 2", 1.0), ("</think>maybe 3", 0.0)]}
    (s1,) = read_run(_dump(tmp_path / "v", steps))["steps"]
    assert s1["thinking/hedges_per_response"] == pytest.approx(1.0)  # wait + perhaps / 2 responses
    assert s1["answer/hedges_per_response"] == pytest.approx(0.5)  # maybe, after the pre-opened </think>
    assert s1["thinking/mean_length"] == pytest.approx(1.5)  # "wait, perhaps two" 3 words + "" 0 words


def test_simulated_collapse_dump_is_suppressing_and_flat_is_ok(tmp_path):
    cfg = SimConfig(steps=40, duration=20, onset=10)
    collapse = read_run(write_verl_dump(tmp_path / "collapse", "collapse", cfg=cfg, seed=3))
    v = collapse["verdict"]
    assert v["state"] == "suppressing" and v["hedge_change"] < -0.8
    assert cfg.onset < v["first_fired"]["suppressing"] <= cfg.onset + 20
    assert [r["step"] for r in collapse["steps"]] == list(range(1, 41))
    flat = read_run(write_verl_dump(tmp_path / "flat", "flat", cfg=cfg, seed=3))
    assert flat["verdict"]["state"] == "ok" and not flat["verdict"]["first_fired"]


def test_epistemic_log_keeps_the_last_record_of_a_step(tmp_path):
    recs = [{"step": s, "hedges_per_1k_tokens": 5.0, "mean_length": 100.0, "n_responses": 4} for s in (1, 2, 3)]
    recs.append({"step": 3, "hedges_per_1k_tokens": 1.0, "mean_length": 90.0, "n_responses": 4})  # resumed run
    recs.append({"step": 4, "mechanism": {"gap_difference": -0.5}, "detector": {}})  # no rollouts that step
    (tmp_path / "epistemic.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    res = read_run(tmp_path)
    assert res["source"] == "epistemic.jsonl"
    assert [r["step"] for r in res["steps"]] == [1, 2, 3, 4]
    assert res["steps"][2]["hedges_per_1k_tokens"] == 1.0 and res["steps"][3]["state"] is None
    assert res["notes"] and "more than once" in res["notes"][0]
    (tmp_path / "epistemic.jsonl").write_text('{"step": "x"}\n')
    with pytest.raises(Exception, match=r"epistemic.jsonl:1: field 'step'"):
        read_run(tmp_path)


def test_checkpoint_folders_of_eval_samples(tmp_path):
    for step, text in ((20, "the answer"), (10, "wait, maybe the answer")):
        rows = [Sample(problem_id="p", index=i, response=text, correct=i == 0, n_tokens=4) for i in range(2)]
        write_jsonl(tmp_path / f"checkpoint-{step}" / "samples.jsonl", rows)
    res = read_run(tmp_path)
    assert res["source"] == "checkpoint samples"
    assert [r["step"] for r in res["steps"]] == [10, 20]
    assert res["steps"][0]["hedges_per_1k_tokens"] == pytest.approx(1000 * 2 / 4)  # n_tokens used, not words
    assert res["steps"][0]["units"] == "tokens" and res["steps"][1]["hedges_per_1k_tokens"] == 0.0


def test_trl_completion_logs(tmp_path):
    pd = pytest.importorskip("pandas")
    folder = tmp_path / "completions"
    folder.mkdir()
    for step in (1, 2):
        df = pd.DataFrame(
            {
                "step": [step] * 2,
                "prompt": ["q", "q"],
                "completion": [
                    [{"role": "assistant", "content": "hmm, wait"}],
                    [{"role": "assistant", "content": "x"}],
                ],
                "reward_math_verify": [1.0, 0.0],
                "advantage": [0.5, -0.5],
            }
        )
        df.to_parquet(folder / f"completions_{step:05d}.parquet")
    res = read_run(tmp_path)
    assert res["source"] == "trl-completions"
    s1 = res["steps"][0]
    assert (
        s1["accuracy"] == 0.5 and s1["correct/hedges_per_response"] == 2.0 and s1["incorrect/hedges_per_response"] == 0
    )


def test_cli_table_json_plot_and_errors(tmp_path):
    dump = write_verl_dump(tmp_path / "verl", "collapse", cfg=SimConfig(steps=30, duration=10), seed=1)
    out = runner.invoke(app, ["monitor", str(dump)])
    assert out.exit_code == 0, out.output
    assert "verdict: suppressing" in out.stdout and "suppressing first at step" in out.stdout
    plot = ["--plot", str(tmp_path / "fig.png")] if HAS_MPL else []
    js = runner.invoke(app, ["monitor", str(dump), "--json", *plot])
    assert js.exit_code == 0, js.output
    obj = json.loads(js.stdout)
    assert set(obj) >= {"steps", "verdict"} and len(obj["steps"]) == 30 and obj["verdict"]["state"] == "suppressing"
    if HAS_MPL:
        assert (tmp_path / "fig.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (dump / "31.jsonl").write_text('{"input": "q", "step": 31}\n')
    bad = runner.invoke(app, ["monitor", str(dump)])
    assert bad.exit_code == 2 and "31.jsonl:1: field 'output'" in bad.output
    missing = runner.invoke(app, ["monitor", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "no such file or folder" in missing.output


def test_documented_commands_run(tmp_path, monkeypatch):
    """docs/monitor.md's quick-start block runs as written."""
    import re
    import shlex

    from sdlens.monitor.simulate import main as simulate_main

    doc = (Path(__file__).resolve().parents[1] / "docs" / "monitor.md").read_text()
    block = re.search(r"## Quick start\n\n```bash\n(.*?)```", doc, flags=re.S).group(1)
    monkeypatch.chdir(tmp_path)
    ran = 0
    for line in block.splitlines():
        argv = shlex.split(line.split("  #")[0])
        if "--plot" in argv and not HAS_MPL:
            continue
        if argv[:3] == ["python", "-m", "sdlens.monitor.simulate"]:
            simulate_main(argv[3:])
        else:
            assert argv[0] == "sdlens", line
            result = runner.invoke(app, argv[1:])
            assert result.exit_code == 0, f"{line}\n{result.output}"
            assert result.stdout.strip() or "--plot" in line
        ran += 1
    assert ran == (4 if HAS_MPL else 3) and (tmp_path / "demo" / "verl.png").is_file() == HAS_MPL


def test_a_log_not_yet_written_to_has_no_data_and_a_bad_line_is_named(tmp_path):
    (tmp_path / "epistemic.jsonl").write_text("\n")
    res = read_run(tmp_path)
    assert res["steps"] == [] and res["verdict"]["reason"] == "no data yet"
    (tmp_path / "epistemic.jsonl").write_text('{"step": 1}\n{"step": \n')
    with pytest.raises(InputError, match=r"epistemic\.jsonl:2: "):
        read_run(tmp_path)
