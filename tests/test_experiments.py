"""sdlens.experiments: the section-3 contexts and hint, the statistics, and each experiment end to end on the tiny
model (real generation, real training, a real plug-in grader); every table is recomputed here from the saved files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import EPISTEMIC_WORDS
from sdlens.errors import InputError
from sdlens.experiments.common import sample_stats
from sdlens.experiments.contexts import CONTEXTS, hint_prompt, with_hint
from sdlens.schema import Problem, Sample
from test_experiments_helpers import (
    GEN,
    RL_SMALL,
    SFT_SMALL,
    read_jsonl,
    register_parity,
    shared_richer_context,
    tiny_model,
    write_problems,
)


@pytest.fixture(scope="module")
def rc_run(tmp_path_factory) -> Path:
    return shared_richer_context(tmp_path_factory)


def _paper_e(text: str) -> int:
    low = text.lower()
    return sum(low.count(w) for w in EPISTEMIC_WORDS)


def _table(rows: list[dict]) -> dict[str, float]:
    """Table 1 columns from raw sample dicts: means over problems of per-problem means; E/1k a ratio of sums."""
    by: dict[str, list[dict]] = {}
    for r in rows:
        by.setdefault(r["problem_id"], []).append(r)

    def mean(xs):
        return sum(xs) / len(xs)

    e_sum = sum(_paper_e(r["response"]) for r in rows)
    tok_sum = sum(r["n_tokens"] for r in rows)
    return {
        "score": mean([mean([1.0 if r["correct"] else 0.0 for r in rs]) for rs in by.values()]),
        "length": mean([mean([r["n_tokens"] for r in rs]) for rs in by.values()]),
        "E": mean([mean([_paper_e(r["response"]) for r in rs]) for rs in by.values()]),
        "E_per_1k": 1000 * e_sum / tok_sum,
        "problems": len(by),
    }


# ---------------------------------------------------------------- contexts


def test_hint_prompt_is_the_papers_and_contexts_strip_thinking():
    content = "Find x.\nPlease reason step by step, and put your final answer within \\boxed{}."
    assert hint_prompt(content, "S") == content + "\n\nCorrect solution: S\n\nCorrectly solve the original question."
    p = Problem(id="p", messages=[{"role": "system", "content": "sys"}, {"role": "user", "content": content}])
    preopened = "let me think. wait, maybe 3\n</think>\n\nSo x = \\boxed{3}."
    s = with_hint(p, preopened, "s")
    assert s.messages[0] == {"role": "system", "content": "sys"} and s.id == "p"
    assert s.messages[1]["content"] == hint_prompt(content, preopened)
    nothink = with_hint(p, preopened, "s-nothink")
    assert nothink.messages[1]["content"] == hint_prompt(content, "So x = \\boxed{3}.")
    assert nothink.meta == {"hint_context": "s-nothink", "hint_solution": "So x = \\boxed{3}."}
    paired = with_hint(p, "<think>hmm</think> done", "regen")
    assert paired.messages[1]["content"].endswith(
        "Correct solution: <think>hmm</think> done\n\nCorrectly solve the original question."
    )
    assert with_hint(p, "x", "none").messages == p.messages and p.meta == {}  # the input is not modified
    with pytest.raises(ValueError, match="unknown context"):
        with_hint(p, "x", "sx")
    with pytest.raises(ValueError, match="user turn"):
        with_hint(Problem(id="q", messages=[{"role": "assistant", "content": "a"}]), "x", "s")
    assert CONTEXTS == ("none", "s", "s-nothink", "regen")


def test_sample_stats_match_a_direct_computation():
    texts = ["Wait, maybe 2. Check: yes.", "It is 2.", "Hmm... perhaps 5, unlikely", "Actually 7", "7"]
    rows = [
        {"problem_id": "a", "response": texts[0], "correct": True, "n_tokens": 10},
        {"problem_id": "a", "response": texts[1], "correct": False, "n_tokens": 4},
        {"problem_id": "b", "response": texts[2], "correct": False, "n_tokens": 12},
        {"problem_id": "c", "response": texts[3], "correct": True, "n_tokens": 3},
        {"problem_id": "c", "response": texts[4], "correct": True, "n_tokens": 1},
    ]
    got = sample_stats([Sample(index=i, **r) for i, r in enumerate(rows)])
    want = _table(rows)
    for key in ("score", "length", "E", "E_per_1k"):
        assert got[key]["value"] == pytest.approx(want[key]), key
        lo, hi = got[key]["ci"]
        assert lo <= got[key]["value"] <= hi
    assert want["E"] > 0 and got["problems"] == 3 and got["samples"] == 5
    assert got["per_word"]["likely"] == pytest.approx(1 / 5)  # "unlikely": the paper's substring rule
    single = sample_stats([Sample(problem_id="a", response="wait", correct=True, n_tokens=1)])
    assert single["score"]["ci"] is None and single["E"]["value"] == 1.0


# ---------------------------------------------------------------- section 3


def test_richer_context_end_to_end(rc_run: Path):
    summary = json.loads((rc_run / "summary.json").read_text())
    assert summary["kind"] == "richer-context"
    unguided = read_jsonl(rc_run / "eval" / "unguided" / "samples.jsonl")
    problems = [json.loads(line) for line in (rc_run.parent / "problems.jsonl").read_text().splitlines()]
    counts = {}
    for r in unguided:
        counts[r["problem_id"]] = counts.get(r["problem_id"], 0) + bool(r["correct"])
    # file order, 1-4 of 8 correct, stop at 3 (scanning 4 problems at a time)
    scanned = summary["selection"]["scanned"]
    expect = [p["id"] for p in problems[:scanned] if 1 <= counts[p["id"]] <= 4][:3]
    assert summary["selection"]["kept_ids"] == expect and len(expect) >= 1
    assert scanned == (4 if len([p for p in problems[:4] if 1 <= counts[p["id"]] <= 4]) >= 3 else 6)

    # every hinted prompt holds the right solution, in the paper's words
    by_pid = {}
    for r in sorted(unguided, key=lambda r: r["index"]):
        by_pid.setdefault(r["problem_id"], []).append(r)
    first_ok = {pid: next(r["response"] for r in rs if r["correct"]) for pid, rs in by_pid.items() if pid in expect}
    content = {p["id"]: p["question"].strip() for p in problems}
    kept_rows = read_jsonl(rc_run / "prompts" / "none.jsonl")
    assert [r["id"] for r in kept_rows] == expect
    assert all(r["messages"][-1]["content"].startswith(content[r["id"]]) for r in kept_rows)
    for row in read_jsonl(rc_run / "prompts" / "s.jsonl"):
        user = row["messages"][-1]["content"]
        assert user.startswith(content[row["id"]]) and user.endswith(
            f"\n\nCorrect solution: {first_ok[row['id']]}\n\nCorrectly solve the original question."
        )
    s_round = {}
    for r in sorted(read_jsonl(rc_run / "samples" / "s.jsonl"), key=lambda r: r["index"]):
        s_round.setdefault(r["problem_id"], []).append(r)
    for row in read_jsonl(rc_run / "prompts" / "regen.jsonl"):
        rs = s_round[row["id"]]
        best = next((r["response"] for r in rs if r["correct"]), rs[0]["response"])
        assert row["meta"]["hint_solution"] == best

    # Table 1 recomputed from the saved samples
    for ctx in CONTEXTS:
        rows = read_jsonl(rc_run / "samples" / f"{ctx}.jsonl")
        assert {r["context"] for r in rows} == {ctx}
        assert len(rows) == 8 * len(expect) and {r["problem_id"] for r in rows} == set(expect)
        want = _table(rows)
        got = summary["contexts"][ctx]
        for key in ("score", "length", "E", "E_per_1k"):
            assert got[key]["value"] == pytest.approx(want[key]), (ctx, key)
    assert summary["contexts"]["none"]["score"]["value"] == pytest.approx(
        sum(counts[p] / 8 for p in expect) / len(expect)
    )
    manifest = json.loads((rc_run / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["data"]["data"]["sha256"]
    assert "torch" in manifest["versions"] and manifest["config"]["n"] == 8


def test_richer_context_rerun_resumes_without_sampling(rc_run: Path, tmp_path_factory):
    from sdlens.experiments.richer_context import RicherContextConfig, run_richer_context

    register_parity()
    before = json.loads((rc_run / "summary.json").read_text())
    cfg = RicherContextConfig(
        model=str(tiny_model(tmp_path_factory)),
        data=str(rc_run.parent / "problems.jsonl"),
        out=str(rc_run),
        max_problems=3,
        scan_batch=4,
        **GEN,
    )
    after = run_richer_context(cfg)
    assert after["contexts"] == before["contexts"]
    for stage in ("unguided", "s", "s-nothink", "regen"):
        sessions = json.loads((rc_run / "eval" / stage / "manifest.json").read_text())["sessions"]
        assert sessions[-1]["new_samples"] == 0, stage
    with pytest.raises(InputError, match="window"):
        run_richer_context(RicherContextConfig(model="m", data="d", out="o", window=(0, 4)))


# ---------------------------------------------------------------- section 4


def test_guided_sft_end_to_end(rc_run: Path, tmp_path_factory, tmp_path):
    from sdlens.experiments.guided_sft import PAPER_SYSTEM, GuidedSFTConfig, run_guided_sft

    register_parity()
    tiny = tiny_model(tmp_path_factory)
    bench = write_problems(tmp_path / "bench.jsonl", 3)
    out = tmp_path / "gs"
    cfg = GuidedSFTConfig(
        model=str(tiny),
        out=str(out),
        from_richer_context=str(rc_run),
        benchmarks=[str(bench)],
        n_eval=4,
        train_overrides={**SFT_SMALL, "max_steps": 1},
        **GEN,
    )
    summary = run_guided_sft(cfg)
    ug = json.loads((out / "data" / "sft_unguided.json").read_text())
    g = json.loads((out / "data" / "sft_guided.json").read_text())
    # same problems, same count; unguided = first correct round-0 trace, guided = first correct c=s trace
    assert len(ug) == len(g) == summary["datasets"]["unguided"]["examples"] >= 1
    assert summary["datasets"]["unguided"]["problems"] == summary["datasets"]["guided"]["problems"]
    rounds = {ctx: read_jsonl(rc_run / "samples" / f"{ctx}.jsonl") for ctx in ("none", "s")}
    prompts = {json.loads(x)["id"]: json.loads(x)["question"] for x in (rc_run.parent / "problems.jsonl").open()}
    for pid, a, b in zip(summary["datasets"]["unguided"]["problems"], ug, g, strict=True):
        for row, ctx in ((a, "none"), (b, "s")):
            ok = sorted(
                (r for r in rounds[ctx] if r["problem_id"] == pid and r["correct"] and r["response"].strip()),
                key=lambda r: r["index"],
            )
            assert row["output"] == ok[0]["response"] and row["system"] == PAPER_SYSTEM
            assert row["instruction"].startswith(prompts[pid].strip()) and "Correct solution" not in row["instruction"]
    # the three models were evaluated, the SFT ones from their trained folders; Table 2 recomputed
    name = bench.stem
    for model in ("base", "unguided_sft", "guided_sft"):
        ev = out / "eval" / model / name
        spec = json.loads((ev / "manifest.json").read_text())["model"]["spec"]
        assert spec == (str(tiny) if model == "base" else str(out / "train" / model.removesuffix("_sft")))
        want = _table(read_jsonl(ev / "samples.jsonl"))
        got = summary["models"][model][name]
        assert summary["table"][model][name]["value"] == pytest.approx(want["score"])
        for key in ("E", "length"):
            assert got[key]["value"] == pytest.approx(want[key])
    for run in ("unguided", "guided"):
        assert json.loads((out / "train" / run / "run_summary.json").read_text())["global_step"] == 1
    # a rerun reuses the trained models and the eval samples; other training settings are refused
    again = run_guided_sft(cfg)
    assert again["models"] == summary["models"]
    cfg.train_overrides = {**cfg.train_overrides, "learning_rate": 5e-4}
    with pytest.raises(InputError, match="other settings"):
        run_guided_sft(cfg)


# ---------------------------------------------------------------- sections 5-6


def test_coverage_sets_nest_and_are_deterministic():
    from sdlens.experiments.coverage import build_coverage_set, parse_level, shipped_level

    pool = [Problem(id=f"p{i}", messages=[{"role": "user", "content": str(i)}], answer=str(i)) for i in range(40)]
    rows1, one = build_coverage_set(pool, 1, 64, seed=0)
    rows8, eight = build_coverage_set(pool, 8, 8, seed=0)
    _, thirty = build_coverage_set(list(reversed(pool)), 32, 1, seed=0)
    assert len(rows1) == len(rows8) == 64 and {p.id for p in rows8} == {p.id for p in eight}
    assert set(p.id for p in one) <= set(p.id for p in eight) <= set(p.id for p in thirty)
    assert [p.id for p in rows8[:8]] == [p.id for p in eight]  # round-robin copies
    assert [p.id for p in build_coverage_set(pool, 8, 1, seed=1)[1]] != [p.id for p in eight]
    assert parse_level("8x8") == (8, 8) and parse_level("64") == (64, 1) and parse_level("x.parquet") is None
    with pytest.raises(InputError, match="pool has 40"):
        build_coverage_set(pool, 41, 1, seed=0)
    path = shipped_level("8x8")
    assert path is not None and path.name == "seen_8x8.parquet" and path.is_file()
    assert shipped_level("3x3") is None


def _coverage_run(tmp_path_factory, tmp_path, levels, methods, steps, rerun=False):
    from sdlens.experiments.coverage import CoverageConfig, run_coverage

    register_parity()
    pool = write_problems(tmp_path / "pool.jsonl", 8)
    ood = write_problems(tmp_path / "ood.jsonl", 3)
    out = tmp_path / "cov"
    cfg = CoverageConfig(
        model=str(tiny_model(tmp_path_factory)),
        out=str(out),
        coverage=levels,
        pool=str(pool),
        ood=[str(ood)],
        methods=methods,
        eval_every=1,
        n_eval=2,
        train_overrides={**RL_SMALL, "max_steps": steps},
        **GEN,
    )
    summary = run_coverage(cfg)
    if rerun:  # everything is reused: the same curves, no sample generated
        assert run_coverage(cfg)["curves"] == summary["curves"]
        for manifest in out.rglob("manifest.json"):
            if "sessions" in (m := json.loads(manifest.read_text())) and isinstance(m["sessions"][-1], dict):
                assert m["sessions"][-1]["new_samples"] == 0, manifest
    return out, summary


def _check_coverage(out: Path, summary: dict, level: str, method: str, steps: int) -> None:
    manifest = json.loads((out / "data" / f"{level}.manifest.json").read_text())
    k = len(manifest["problem_ids"])
    train_rows = read_jsonl(out / "data" / f"{level}.jsonl")
    assert [r["problem_id"] for r in train_rows[:k]] == manifest["problem_ids"]
    assert [json.loads(x)["id"] for x in (out / "data" / f"{level}.in_domain.jsonl").open()] == manifest["problem_ids"]
    curve = summary["curves"][level][method]
    assert curve["steps"] == list(range(steps + 1))
    assert (out / level / method / "train" / "checkpoint-1" / "trainer_state.json").is_file()
    for j, step in enumerate(curve["steps"]):
        dirs = curve["points"][j]["dirs"]
        ind = _table(read_jsonl(out / dirs["in_domain"] / "samples.jsonl"))
        oo = _table(read_jsonl(out / dirs["ood-ood"] / "samples.jsonl"))
        assert curve["in_domain_acc"][j]["value"] == pytest.approx(ind["score"]), (method, step)
        assert curve["ood_acc"][j]["value"] == pytest.approx(oo["score"])
        assert curve["E"][j]["value"] == pytest.approx(oo["E"])
        assert curve["length"][j]["value"] == pytest.approx(oo["length"])
        spec = json.loads((out / dirs["ood-ood"] / "manifest.json").read_text())["model"]["spec"]
        assert spec.endswith(f"checkpoint-{step}") if step else "checkpoint" not in spec
    state = json.loads((out / level / method / "train" / "trainer_state.json").read_text())
    logged = {key for h in state["log_history"] for key in h}
    assert any("reward_parity" in key for key in logged)  # trained with the evaluation's grader
    assert json.loads((out / "manifest.json").read_text())["levels"][level]["problem_ids"] == manifest["problem_ids"]


def test_coverage_end_to_end(tmp_path_factory, tmp_path):
    out, summary = _coverage_run(tmp_path_factory, tmp_path, ["2x2"], ["sdpo-paper"], 1, rerun=True)
    _check_coverage(out, summary, "2x2", "sdpo-paper", 1)


@pytest.mark.slow
def test_coverage_two_levels_two_methods(tmp_path_factory, tmp_path):
    out, summary = _coverage_run(tmp_path_factory, tmp_path, ["1x4", "2x2"], ["sdpo-paper", "grpo-paper"], 2)
    for level in ("1x4", "2x2"):
        for method in ("sdpo-paper", "grpo-paper"):
            _check_coverage(out, summary, level, method, 2)
    one = json.loads((out / "data" / "1x4.manifest.json").read_text())["problem_ids"]
    two = json.loads((out / "data" / "2x2.manifest.json").read_text())["problem_ids"]
    assert set(one) < set(two)  # the levels nest
    base = [
        summary["curves"][lvl][m]["points"][0]["dirs"]["ood-ood"]
        for lvl in ("1x4", "2x2")
        for m in ("sdpo-paper", "grpo-paper")
    ]
    assert len(set(base)) == 1  # step 0 is evaluated once


# ---------------------------------------------------------------- CLI


def test_cli_richer_context_and_bad_input(tmp_path_factory, tmp_path):
    from sdlens.cli import app

    register_parity()
    data = write_problems(tmp_path / "p.jsonl", 4)
    out = tmp_path / "cli-rc"
    args = ["experiment", "richer-context", "--model", str(tiny_model(tmp_path_factory)), "--data", str(data)]
    args += ["--out", str(out), "--max-problems", "2", "--max-tokens", "16", "--grader", "parity"]
    args += ["--contexts", "none,s"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["contexts"]) == {"none", "s"} and "Table 1" in res.stdout
    assert (out / "report.html").is_file() and (out / "report.md").is_file()
    bad = CliRunner().invoke(app, [*args[:-2], "--window", "5-2", "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "window" in bad.output and len(bad.output.strip().splitlines()) == 1


# ---------------------------------------------------------------- docs


def _doc_commands(doc: Path) -> list[list[str]]:
    import re
    import shlex

    out = []
    for block in re.findall(r"```bash\n(.*?)```", doc.read_text(), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith(("sdlens experiment", "sdlens report")):
                out.append(shlex.split(line)[1:])
    return out


def test_documented_commands_parse():
    """Every `sdlens experiment` / `sdlens report` line in the docs names real commands and options."""
    import typer

    from sdlens.cli import app

    root = Path(__file__).resolve().parents[1] / "docs"
    commands = _doc_commands(root / "experiments.md") + _doc_commands(root / "report.md")
    assert len(commands) >= 8
    cli = typer.main.get_command(app)
    for args in commands:
        cmd, rest, path = cli, list(args), []
        while hasattr(cmd, "list_commands"):  # a group: descend to the subcommand
            path.append(rest[0])
            cmd, rest = cmd.get_command(None, rest[0]), rest[1:]
            assert cmd is not None, args
        assert path[0] in ("experiment", "report") and cmd.name == path[-1]
        cmd.make_context(path[-1], rest)  # raises on an unknown option or a bad value
    with pytest.raises(Exception, match="No such option"):
        cmd.make_context(path[-1], [*rest, "--no-such-option"])


@pytest.mark.slow
def test_richer_context_on_smollm2(tmp_path):
    """A real small instruct model: its text has hedges, so E is measured on something; Table 1 recomputed."""
    from sdlens.experiments.richer_context import RicherContextConfig, run_richer_context
    from sdlens.report import build_report

    register_parity()
    data = write_problems(tmp_path / "p.jsonl", 3)
    out = tmp_path / "rc"
    cfg = RicherContextConfig(
        model="smollm2-135m",
        data=str(data),
        out=str(out),
        n=6,
        window=(1, 5),  # parity of real text: all 6 alike has odds 1 in 32 per problem
        contexts=("none", "s"),
        max_new_tokens=48,
        grader="parity",
        max_problems=1,
    )
    summary = run_richer_context(cfg)
    assert summary["selection"]["kept"] == 1 and set(summary["contexts"]) == {"none", "s"}
    for ctx in summary["contexts"]:
        rows = read_jsonl(out / "samples" / f"{ctx}.jsonl")
        want = _table(rows)
        for key in ("score", "length", "E", "E_per_1k"):
            assert summary["contexts"][ctx][key]["value"] == pytest.approx(want[key]), (ctx, key)
    html = build_report(out).read_text()
    assert "Table 1" in html and "<img " in html
