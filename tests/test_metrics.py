"""avg@n, unbiased pass@k, maj@k, any-correct@n and bootstrap CIs, against closed forms and brute force."""

from __future__ import annotations

import itertools
import json
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from sdlens.cli import app
from sdlens.metrics import (
    MetricsError,
    bootstrap_ci,
    compute_metrics,
    compute_metrics_by,
    default_ks,
    maj_at_k,
    pass_at_k,
)
from sdlens.schema import Sample, write_jsonl

runner = CliRunner()


# ---------------------------------------------------------------- pass@k


def test_pass_at_k_closed_forms() -> None:
    for n in range(1, 12):
        for c in range(n + 1):
            assert pass_at_k(n, c, 1) == pytest.approx(c / n)  # pass@1 is the mean accuracy
            assert pass_at_k(n, c, n) == (1.0 if c else 0.0)  # pass@n is any-correct
            for k in range(1, n + 1):
                assert pass_at_k(n, 0, k) == 0.0 and pass_at_k(n, n, k) == 1.0
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)  # 1 - C(3,2)/C(4,2) = 1 - 3/6
    assert pass_at_k(16, 4, 4) == pytest.approx(1 - Fraction(math.comb(12, 4), math.comb(16, 4)))


@given(n=st.integers(1, 60), data=st.data())
def test_pass_at_k_equals_the_exact_ratio(n: int, data) -> None:
    c = data.draw(st.integers(0, n))
    k = data.draw(st.integers(1, n))
    exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
    assert pass_at_k(n, c, k) == pytest.approx(float(exact), abs=1e-12)


@settings(max_examples=60)
@given(outcomes=st.lists(st.booleans(), min_size=1, max_size=10), data=st.data())
def test_pass_at_k_equals_brute_force_over_subsets(outcomes: list[bool], data) -> None:
    n, c = len(outcomes), sum(outcomes)
    k = data.draw(st.integers(1, n))
    subsets = list(itertools.combinations(range(n), k))
    brute = Fraction(sum(any(outcomes[i] for i in s) for s in subsets), len(subsets))
    assert pass_at_k(n, c, k) == pytest.approx(float(brute), abs=1e-12)


def test_pass_at_k_is_stable_for_large_n() -> None:
    assert pass_at_k(1000, 1, 500) == pytest.approx(0.5)
    assert pass_at_k(100_000, 3, 1) == pytest.approx(3e-5)
    assert 0.0 <= pass_at_k(10_000, 5000, 5000) <= 1.0


def test_pass_at_k_errors() -> None:
    with pytest.raises(MetricsError, match="at least k=5"):
        pass_at_k(4, 1, 5)
    with pytest.raises(MetricsError):
        pass_at_k(4, 1, 0)
    with pytest.raises(MetricsError):
        pass_at_k(4, 5, 1)


# ---------------------------------------------------------------- maj@k


def test_maj_at_k_definition_and_ties() -> None:
    assert maj_at_k([("5", True), ("5", True), ("6", False)], 3) == 1.0
    assert maj_at_k([("6", False), ("6", False), ("5", True)], 3) == 0.0
    assert maj_at_k([("6", False), ("5", True)], 2) == 0.5  # tie of two classes: half credit
    assert maj_at_k([("6", False), ("7", False), ("5", True)], 3) == pytest.approx(1 / 3)
    # every correct sample votes for the gold class, however it was written
    assert maj_at_k([("0.5", True), ("\\frac12", True), ("3", False)], 3) == 1.0
    # answers equal up to whitespace and $...$ vote together
    assert maj_at_k([("x + 1", False), ("$x+1$", False), ("2", True)], 3) == 0.0
    # no extracted answer: no vote
    assert maj_at_k([(None, False), ("", False), ("2", True)], 3) == 1.0
    assert maj_at_k([(None, False), (None, False)], 2) == 0.0
    # the first k samples
    assert maj_at_k([("5", True), ("6", False), ("6", False)], 1) == 1.0
    with pytest.raises(MetricsError):
        maj_at_k([("5", True)], 2)


# ---------------------------------------------------------------- bootstrap


def test_bootstrap_matches_a_plain_loop() -> None:
    scores = np.random.default_rng(1).random((37, 2))
    lo, hi = bootstrap_ci(scores, resamples=500, seed=7, max_cells=1000)  # several chunks
    rng = np.random.default_rng(7)
    means = np.array([scores[rng.integers(0, 37, size=37)].mean(axis=0) for _ in range(500)])
    assert np.allclose(lo, np.quantile(means, 0.025, axis=0)) and np.allclose(hi, np.quantile(means, 0.975, axis=0))


def test_bootstrap_approaches_the_exact_distribution() -> None:
    scores = np.array([0.0, 0.25, 1.0, 1.0])
    exact = sorted(np.mean([scores[i] for i in idx]) for idx in itertools.product(range(4), repeat=4))
    lo, hi = bootstrap_ci(scores, resamples=40_000, seed=0)
    assert lo[0] == pytest.approx(np.quantile(exact, 0.025), abs=0.07)
    assert hi[0] == pytest.approx(np.quantile(exact, 0.975), abs=0.07)


# ---------------------------------------------------------------- compute_metrics


def make_samples(outcomes: dict[str, list[bool]], **fields) -> list[Sample]:
    out = []
    for pid, row in outcomes.items():
        for i, ok in enumerate(row):
            extracted = "gold" if ok else f"wrong{i % 2}"
            out.append(Sample(problem_id=pid, index=i, correct=ok, extracted=extracted, **fields))
    return out


OUTCOMES = {
    "p1": [True, False, False, True],
    "p2": [False, False, False, False],
    "p3": [True, True, True, False],
    "p4": [False, True, False, False],
    "p5": [True, True, True, True],
}


def test_compute_metrics_against_brute_force() -> None:
    rep = compute_metrics(make_samples(OUTCOMES), [1, 2, 4], resamples=300, seed=3)
    rows = list(OUTCOMES.values())
    assert rep.n_problems == 5 and rep.n_samples == 20 and (rep.n_min, rep.n_max) == (4, 4)
    assert rep.metrics["avg@n"].value == pytest.approx(np.mean([sum(r) / 4 for r in rows]))
    for k in (1, 2, 4):
        brute = np.mean([np.mean([any(r[i] for i in s) for s in itertools.combinations(range(4), k)]) for r in rows])
        assert rep.metrics[f"pass@{k}"].value == pytest.approx(brute)
    assert rep.metrics["any-correct@n"].value == pytest.approx(4 / 5)
    assert rep.metrics["pass@4"].value == rep.metrics["any-correct@n"].value
    assert rep.metrics["pass@1"].value == pytest.approx(rep.metrics["avg@n"].value)
    # CIs: the same bootstrap computed by hand over the per-problem scores
    per_problem = np.array([sum(r) / 4 for r in rows])
    rng = np.random.default_rng(3)
    means = [per_problem[rng.integers(0, 5, size=5)].mean() for _ in range(300)]
    assert rep.metrics["avg@n"].lo == pytest.approx(np.quantile(means, 0.025))
    assert rep.metrics["avg@n"].hi == pytest.approx(np.quantile(means, 0.975))
    for est in rep.metrics.values():
        assert est.lo <= est.value + 1e-12 and est.value <= est.hi + 1e-12
    assert rep.warnings == []


def test_k_larger_than_n_is_an_error() -> None:
    with pytest.raises(MetricsError, match="k=8 is larger than n=4"):
        compute_metrics(make_samples(OUTCOMES), [1, 8])
    samples = make_samples(OUTCOMES) + make_samples({"short": [True, False]})
    with pytest.raises(MetricsError, match="'short' has 2 samples"):
        compute_metrics(samples, [4])


def test_warnings() -> None:
    greedy = make_samples(OUTCOMES, sampling={"temperature": 0})
    assert any("temperature 0" in w for w in compute_metrics(greedy, resamples=0).warnings)
    single = make_samples({"a": [True], "b": [False]}, sampling={"temperature": 0})
    assert not any("temperature 0" in w for w in compute_metrics(single, resamples=0).warnings)
    uneven = make_samples({"a": [True, False], "b": [True]})
    assert any("n varies" in w for w in compute_metrics(uneven, resamples=0).warnings)
    twice = make_samples(OUTCOMES) + make_samples(OUTCOMES)
    assert any("repeat a (problem_id, index)" in w for w in compute_metrics(twice, resamples=0).warnings)
    mixed = make_samples({"a": [True, False]}, model="m1") + make_samples({"b": [True, True]}, model="m2")
    assert any("--by model" in w for w in compute_metrics(mixed, resamples=0).warnings)
    with pytest.raises(MetricsError, match="not graded"):
        compute_metrics([Sample(problem_id="x")])
    with pytest.raises(MetricsError, match="no samples"):
        compute_metrics([])


def test_per_source_and_groups() -> None:
    samples = make_samples({"a1": [True, True], "a2": [False, True]}, source="aime")
    samples += make_samples({"m1": [False, False]}, source="math500")
    rep = compute_metrics(samples, resamples=100)
    assert set(rep.by_source) == {"aime", "math500"}
    assert rep.by_source["aime"]["metrics"]["avg@n"].value == pytest.approx(0.75)
    assert rep.by_source["math500"]["n_problems"] == 1
    reports = compute_metrics_by(samples, "source", resamples=0)
    assert [r.group["value"] for r in reports] == ["aime", "math500"]
    assert default_ks(16) == [1, 2, 4, 8, 16] and default_ks(6) == [1, 2, 4, 6] and default_ks(1) == [1]


def _tokenizer_dir(tmp_path: Path) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "a": 1, "b": 2, "<": 3, ">": 4, "/": 5, "think": 6}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]").save_pretrained(tmp_path / "tok")
    return tmp_path / "tok"


def test_lengths(tmp_path) -> None:
    from sdlens.metrics import load_tokenizer

    samples = [
        Sample(problem_id="p", index=0, response="<think>a b a</think> b", correct=True),
        Sample(problem_id="p", index=1, response="a b a b a</think> b", correct=False),  # pre-opened template
    ]
    rep = compute_metrics(samples, resamples=0, tokenizer=load_tokenizer(str(_tokenizer_dir(tmp_path))))
    # whitespace pre-tokenizer: "<think>" -> "<", "think", ">" and "</think>" -> "</", "think", ">"
    assert rep.lengths["response_tokens"]["mean_correct"] == 10 and rep.lengths["thinking_tokens"]["mean"] == 4
    rep = compute_metrics(samples, resamples=0, tokenizer=lambda text: len(text.split()))
    assert rep.lengths["thinking_tokens"]["mean_correct"] == 3 and rep.lengths["thinking_tokens"]["mean_incorrect"] == 5
    with_counts = [
        Sample(problem_id="p", index=i, correct=True, n_tokens=10 * i, finish_reason="length") for i in range(3)
    ]
    rep = compute_metrics(with_counts, resamples=0)
    assert rep.lengths["response_tokens"]["mean"] == 10 and rep.lengths["truncated_fraction"] == 1.0
    assert compute_metrics(make_samples(OUTCOMES), resamples=0).lengths is None


# ---------------------------------------------------------------- CLI


def _graded_file(tmp_path: Path, **fields) -> Path:
    path = tmp_path / "graded.jsonl"
    write_jsonl(path, make_samples(OUTCOMES, **fields))
    return path


def test_cli_metrics_json(tmp_path) -> None:
    path = _graded_file(tmp_path, source="aime24")
    result = runner.invoke(app, ["metrics", str(path), "--k", "1,2,4", "--json", "--bootstrap", "300", "--seed", "3"])
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    lib = compute_metrics(make_samples(OUTCOMES, source="aime24"), [1, 2, 4], resamples=300, seed=3)
    assert got["metrics"]["pass@2"]["value"] == pytest.approx(lib.metrics["pass@2"].value)
    assert got["metrics"]["avg@n"]["ci"] == pytest.approx([lib.metrics["avg@n"].lo, lib.metrics["avg@n"].hi])
    assert got["n"] == {"min": 4, "max": 4} and got["ks"] == [1, 2, 4] and "aime24" in got["by_source"]
    table = runner.invoke(app, ["metrics", str(path)])
    assert table.exit_code == 0 and "avg@4" in table.stdout and "any-correct@4" in table.stdout


def test_cli_metrics_errors_and_warnings(tmp_path) -> None:
    path = _graded_file(tmp_path, sampling={"temperature": 0})
    result = runner.invoke(app, ["metrics", str(path), "--k", "1,8"])
    assert result.exit_code == 2 and result.stderr.strip().startswith("error: k=8 is larger than n=4")
    result = runner.invoke(app, ["metrics", str(path), "--k", "one"])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    result = runner.invoke(app, ["metrics", str(path), "--json"])
    assert result.exit_code == 0 and "temperature 0" in result.stderr and json.loads(result.stdout)
    ungraded = tmp_path / "u.jsonl"
    ungraded.write_text('{"problem_id": "a", "correct": true}\n{"problem_id": "a"}\n')
    result = runner.invoke(app, ["metrics", str(ungraded)])
    assert result.exit_code == 2
    assert result.stderr.strip().startswith(f"error: {ungraded}:2: field 'correct': null or missing")
    result = runner.invoke(app, ["metrics", str(tmp_path / "missing.parquet")])
    assert result.exit_code == 2 and "cannot open" in result.stderr


def test_cli_metrics_by_and_tokenizer(tmp_path) -> None:
    samples = make_samples({"a": [True, False]}, model="m1") + make_samples({"a": [True, True]}, model="m2")
    for s in samples:
        s.response = "a b"
    write_jsonl(tmp_path / "m.jsonl", samples)
    tok = _tokenizer_dir(tmp_path)
    result = runner.invoke(
        app, ["metrics", str(tmp_path / "m.jsonl"), "--by", "model", "--json", "--tokenizer", str(tok)]
    )
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    assert [g["group"]["value"] for g in got["groups"]] == ["m1", "m2"]
    assert [g["metrics"]["avg@n"]["value"] for g in got["groups"]] == [0.5, 1.0]
    assert got["groups"][0]["lengths"]["response_tokens"]["mean"] == 2
    result = runner.invoke(app, ["metrics", str(tmp_path / "m.jsonl"), "--tokenizer", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "cannot load tokenizer" in result.stderr
