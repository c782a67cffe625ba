"""Behaviour measures (reflection, answer revisions, forks) through analyze's accumulator, grouping and compare."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from conftest import write_lines
from sdlens.cli import app
from sdlens.epistemic.analyze import AnalyzeConfig, analyze
from sdlens.epistemic.compare import compare
from sdlens.epistemic.measures import MeasureOptions, Reflection, revision_points, stated_answers
from sdlens.schema import Sample, write_jsonl

runner = CliRunner()

# problem "p1": two responses, both correct; problem "p2": one wrong response
R1 = "<think>The answer is 4. Wait, let me recheck: 2+3 = 5.</think>\\boxed{5}"  # reflects, revises 4 -> 5
R2 = "<think>2+3 = 5, try again to be sure: 5.</think>\\boxed{5}"  # reflects, states nothing while thinking
R3 = "<think>So \\boxed{7}.</think>\\boxed{7}"  # no reflection, keeps 7
PROBLEMS = [("p1", "What is 2+3?", "5", [R1, R2], [True, True]), ("p2", "What is 3+4?", "8", [R3], [False])]


def _write_all_formats(root: Path) -> dict[str, Path]:
    """The same three responses in every format sdlens reads."""
    out: dict[str, Path] = {}
    out["paper-eval"] = write_lines(
        root / "paper.jsonl",
        [
            json.dumps({"idx": pid, "generated_responses": rs, "answers_correctness": cs, "gold_answer": g})
            for pid, _, g, rs, cs in PROBLEMS
        ],
    )
    out["paper-hint"] = write_lines(
        root / "hint.jsonl",
        [
            json.dumps({"original_index": pid, "round1_responses": rs, "round1_is_correct": cs})
            for pid, _, _, rs, cs in PROBLEMS
        ],
    )
    dump = root / "verl"
    dump.mkdir()
    write_lines(
        dump / "3.jsonl",
        [
            json.dumps({"input": q, "output": r, "score": 1.0 if c else 0.0, "step": 3})
            for _, q, _, rs, cs in PROBLEMS
            for r, c in zip(rs, cs, strict=True)
        ],
    )
    out["verl-dump"] = dump
    pq.write_table(
        pa.table(
            {
                "prompt": [json.dumps([{"role": "user", "content": q}]) for _, q, _, _, _ in PROBLEMS],
                "responses": [rs for *_, rs, _ in PROBLEMS],
                "reward_model": [json.dumps({"ground_truth": g}) for _, _, g, _, _ in PROBLEMS],
                "problem_id": [pid for pid, *_ in PROBLEMS],
            }
        ),
        root / "verl_gen.parquet",
    )
    out["verl-generation"] = root / "verl_gen.parquet"
    trl = root / "trl" / "completions"
    trl.mkdir(parents=True)
    rows = [(q, r, c) for _, q, _, rs, cs in PROBLEMS for r, c in zip(rs, cs, strict=True)]
    pq.write_table(
        pa.table(
            {
                "step": [1] * 3,
                "prompt": [q for q, _, _ in rows],
                "completion": [r for _, r, _ in rows],
                "accuracy_reward": [float(c) for *_, c in rows],
                "advantage": [0.0] * 3,
            }
        ),
        trl / "completions_00001.parquet",
    )
    out["trl-completions"] = root / "trl"
    samples = [
        Sample(problem_id=pid, index=j, response=r, correct=c, answer=g)
        for pid, _, g, rs, cs in PROBLEMS
        for j, (r, c) in enumerate(zip(rs, cs, strict=True))
    ]
    write_jsonl(root / "samples.jsonl", samples)
    out["sdlens"] = root / "samples.jsonl"
    out["generic"] = write_lines(
        root / "generic.jsonl",
        [
            json.dumps({"qid": pid, "text": r, "ok": c})
            for pid, _, _, rs, cs in PROBLEMS
            for r, c in zip(rs, cs, strict=True)
        ],
    )
    out["openai-batch"] = write_lines(
        root / "batch.jsonl",
        [
            json.dumps(
                {
                    "custom_id": pid,
                    "response": {
                        "status_code": 200,
                        "body": {"choices": [{"index": j, "message": {"content": r}} for j, r in enumerate(rs)]},
                    },
                    "error": None,
                }
            )
            for pid, _, _, rs, _ in PROBLEMS
        ],
    )
    pq.write_table(
        pa.Table.from_pylist(
            [
                {"doc": {"query": q}, "model_response": {"text": [r]}, "metric": {"extractive_match": float(c)}}
                for _, q, _, rs, cs in PROBLEMS
                for r, c in zip(rs, cs, strict=True)
            ]
        ),
        root / "details_math.parquet",
    )
    out["lighteval"] = root / "details_math.parquet"
    out["trace-dataset"] = write_lines(
        root / "openr1.jsonl",
        [
            json.dumps({"uuid": pid, "problem": q, "answer": g, "generations": rs, "correctness_math_verify": cs})
            for pid, q, g, rs, cs in PROBLEMS
        ],
    )
    (root / "array.json").write_text(json.dumps([json.loads(x) for x in out["paper-eval"].read_text().splitlines()]))
    out["json-array"] = root / "array.json"
    try:
        import datasets
    except ImportError:  # a TRL install brings it; without it only this container goes untested here
        return out
    rows = [json.loads(x) for x in out["trace-dataset"].read_text().splitlines()]
    datasets.Dataset.from_list(rows).save_to_disk(str(root / "saved"))
    out["saved-dataset"] = root / "saved"
    return out


# what each format can say about correctness with default keys (the rest need --correct-key)
_KEYS = {"generic": ["--text-key", "text", "--id-key", "qid", "--correct-key", "ok"]}
_NO_CORRECTNESS = {"verl-generation", "openai-batch", "trl-completions"}


def test_reflection_and_revisions_on_every_format(tmp_path: Path) -> None:
    for fmt, path in _write_all_formats(tmp_path).items():
        args = ["analyze", str(path), "--measures", "reflection,revisions", "--json", *_KEYS.get(fmt, [])]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (fmt, result.output)
        res = json.loads(result.stdout.strip().splitlines()[-1])
        refl, rev = res["measures"]["reflection"], res["measures"]["revisions"]
        assert res["n_responses"] == 3, fmt
        assert refl["totals"]["reflections"] == 2 and refl["share_reflective"] == pytest.approx(2 / 3), fmt
        # R1 revises (4 -> 5), R3 keeps 7, R2 states nothing while thinking
        assert rev["totals"]["comparable"] == 2 and rev["share_changed"] == 0.5, fmt
        assert rev["share_changed_when_hedged"] == 1.0 and rev["share_changed_when_not_hedged"] == 0.0, fmt
        if fmt in _NO_CORRECTNESS:
            assert refl["accuracy_reflective"] is None, fmt
        else:
            assert refl["accuracy_reflective"] == 1.0 and refl["accuracy_plain"] == 0.0, fmt
            assert refl["precision"] == 1.0 and refl["recall"] == 1.0, fmt


def test_measures_follow_grouping_and_compare_gives_cis(tmp_path: Path) -> None:
    paths = _write_all_formats(tmp_path)
    res = analyze([paths["paper-eval"]], AnalyzeConfig(by="correct", measures=("reflection", "revisions")))
    assert res["groups"]["true"]["measures"]["reflection"]["share_reflective"] == 1.0
    assert res["groups"]["false"]["measures"]["reflection"]["share_reflective"] == 0.0
    # B: the same problems, hedging and reflection removed
    plain = write_lines(
        tmp_path / "plain.jsonl",
        [
            json.dumps({"idx": pid, "generated_responses": ["<think>5</think>\\boxed{5}"] * len(rs)})
            for pid, _, _, rs, _ in PROBLEMS
        ],
    )
    cmp = compare([paths["paper-eval"]], [plain], AnalyzeConfig(measures=("reflection",)), n_boot=300)
    share = cmp["measures"]["reflection"]["share_reflective"]
    assert cmp["paired"] and share["a"] == pytest.approx(2 / 3) and share["b"] == 0.0
    lo, hi = share["a_ci"]
    assert 0.0 <= lo <= 2 / 3 <= hi <= 1.0
    # two problems: a resample of p1 twice has every A response reflecting, of p2 twice none
    assert share["difference_ci"] == pytest.approx([-1.0, 0.0])
    assert set(cmp["per_word"]) == set(res["per_word"])  # measure columns did not leak into the word table
    table = runner.invoke(app, ["compare", str(paths["paper-eval"]), str(plain), "--measures", "reflection"])
    assert table.exit_code == 0 and "Behaviour measure 'reflection'" in table.stdout and "share_reflect" in table.stdout


def test_compare_measure_ci_is_a_bootstrap_of_problem_sums(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    lines = []
    for i in range(30):
        rs = ["recheck " * int(k) + "x" for k in rng.integers(0, 3, size=4)]
        lines.append(json.dumps({"idx": i, "generated_responses": rs}))
    a = write_lines(tmp_path / "a.jsonl", lines)
    cmp = compare([a], [a], AnalyzeConfig(measures=("reflection",)), n_boot=500, seed=3)
    # direct bootstrap of the per-problem share, resampling problems with the same generator
    refl = np.array([[("recheck" in r) for r in json.loads(x)["generated_responses"]] for x in lines], dtype=float)
    idx = np.random.default_rng(3).integers(0, 30, size=(500, 30))
    direct = refl.sum(axis=1)[idx].sum(axis=1) / (4 * 30)
    lo, hi = np.percentile(direct, [2.5, 97.5])
    got = cmp["measures"]["reflection"]["share_reflective"]
    assert got["a"] == pytest.approx(refl.mean())
    assert got["a_ci"] == pytest.approx([lo, hi])


def test_stated_answers_and_revision_points() -> None:
    assert stated_answers("the answer is 12. Then \\boxed{ 13 } and the final answer is \\boxed{13}") == [
        "12",
        "13",
        "13",
    ]
    assert stated_answers("So the answer is $\\dfrac{1}{2}$, not 0.5") == ["\\frac{1}{2}"]
    first, final, cands = revision_points(Sample(problem_id="x", response="<think>answer is 3</think>\\boxed{4}"))
    assert (first, final, cands) == ("3", "4", ["3"])
    # the grader's extraction wins over re-reading the answer part
    s = Sample(problem_id="x", response="<think>answer is 3</think>so 3", extracted="3")
    assert revision_points(s)[:2] == ("3", "3")
    # no thinking part: the whole response is the thinking and its last stated answer is final
    assert revision_points(Sample(problem_id="x", response="the answer is 2. Hmm, \\boxed{3}"))[:2] == ("2", "3")


def test_reflection_lexicons_by_family() -> None:
    fam = Reflection("family")
    assert fam.lexicon_for("Qwen/Qwen2.5-Math-7B").name == "reflection-qwen"
    assert fam.lexicon_for("deepseek-ai/deepseek-math-7b-base").name == "reflection-deepseek"
    assert fam.lexicon_for("meta-llama/Llama-3.1-8B").name == "reflection-llama"
    assert fam.lexicon_for("other").name == "reflection"
    batch = [
        Sample(problem_id="a", response="Let me re-examine. Recheck.", model="Qwen2.5"),
        Sample(problem_id="a", response="Let me re-examine. Recheck.", model="deepseek-math"),
    ]
    cols = fam.columns(batch, np.zeros(2), "full")
    # Qwen's first set lacks "re-examine"; DeepSeek's has it
    assert cols[:, Reflection.spec.columns.index("reflections")].tolist() == [1, 2]


def test_unknown_measure_is_one_line(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "a.jsonl", [json.dumps({"idx": 0, "generated_responses": ["x"]})])
    result = runner.invoke(app, ["analyze", str(path), "--measures", "reflection,nope"])
    assert result.exit_code == 2 and "unknown measure 'nope'" in result.output
    result = runner.invoke(app, ["analyze", str(path), "--measures", "judged"])
    assert result.exit_code == 2 and "--judge-model" in result.output


def test_forks_from_stored_token_entropies(tmp_path: Path) -> None:
    samples = [
        Sample(
            problem_id="a", response="x", meta={"token_entropy": [0.1, 2.0, 3.0, 0.5], "token_is_top": [1, 0, 1, 1]}
        ),
        Sample(problem_id="b", response="y", meta={"token_entropy": [1.5, 0.2], "token_is_top": [0, 1]}),
        Sample(problem_id="c", response="z"),  # no token data: not scored
    ]
    write_jsonl(tmp_path / "s.jsonl", samples)
    res = analyze([tmp_path / "s.jsonl"], AnalyzeConfig(measures=("forks",)))
    forks = res["measures"]["forks"]
    assert forks["totals"]["forks"] == 3 and forks["totals"]["tokens"] == 6
    assert forks["per_1k_tokens"] == pytest.approx(500.0) and forks["share_not_top"] == pytest.approx(2 / 3)
    assert forks["share_scored"] == pytest.approx(2 / 3)
    high = analyze(
        [tmp_path / "s.jsonl"], AnalyzeConfig(measures=("forks",), measure_options=MeasureOptions(fork_entropy=2.5))
    )
    assert high["measures"]["forks"]["totals"]["forks"] == 1


def test_forks_without_token_entropies_says_how_to_get_them(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "a.jsonl", [json.dumps({"idx": 0, "generated_responses": ["wait"]})])
    result = runner.invoke(app, ["analyze", str(path), "--measures", "reflection,forks"])
    assert result.exit_code == 2 and "token_entropy" in result.output and "sdlens probe" in result.output
