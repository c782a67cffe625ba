"""`sdlens probe` on the tiny random model: the per-token PMI checked against a direct forward pass, the hedge /
other split against an independent hedge mask, the JSON contract, and `--context none` feeding the forks measure."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import write_lines
from sdlens.behaviour.probe import ProbeConfig, run_probe
from sdlens.cli import app
from sdlens.epistemic.analyze import AnalyzeConfig, analyze
from sdlens.errors import InputError

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

runner = CliRunner()


def traces(tmp_path: Path) -> Path:
    return write_lines(
        tmp_path / "traces.jsonl",
        [
            json.dumps(
                {
                    "idx": 0,
                    "question": "What is 2+3?",
                    "gold_answer": "5",
                    "generated_responses": [
                        "Wait, 2+3 is 5. Maybe check: yes \\boxed{5}",
                        "2+3 = 5, so \\boxed{5}",
                        "Hmm, perhaps 6? \\boxed{6}",
                    ],
                    "answers_correctness": [True, True, False],
                }
            ),
            json.dumps(
                {
                    "idx": 1,
                    "question": "What is 4*2?",
                    "gold_answer": "8",
                    "generated_responses": ["4*2 = 8. Actually, let me check. \\boxed{8}", "It might be 8. \\boxed{8}"],
                    "answers_correctness": [True, True],
                }
            ),
            # no correct response to show: not scored under a hint
            json.dumps({"idx": 2, "question": "1+1?", "generated_responses": ["3"], "answers_correctness": [False]}),
        ],
    )


def _direct_logps(model, tok, chat, response: str) -> np.ndarray:
    """log p(y_t | prefix) from one plain forward pass over the whole sequence (no logits_to_keep)."""
    prompt = tok.apply_chat_template(chat, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
    y = tok(response, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([list(prompt) + list(y)])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0].float()
    logp = torch.log_softmax(logits[len(prompt) - 1 : -1], dim=-1)
    return logp.gather(1, torch.tensor(y)[:, None])[:, 0].double().numpy()


def test_probe_pmi_matches_a_direct_forward_pass(tmp_path: Path) -> None:
    from sdlens.epistemic.tokens import hedge_position_mask
    from sdlens.experiments.contexts import hint_prompt
    from sdlens.models import load_causal_lm, load_tokenizer, resolve_model

    data = traces(tmp_path)
    res = run_probe(ProbeConfig(model="tiny-random", data=data, save_tokens=tmp_path / "tok.jsonl"))
    assert res["n_responses"] == 5 and res["skipped"]["no_context"] == 1 and res["n_problems"] == 2
    rows = [json.loads(x) for x in (tmp_path / "tok.jsonl").read_text().splitlines()]
    ref = resolve_model("tiny-random")
    tok, model = load_tokenizer(ref), load_causal_lm(ref)
    # response 0 of problem 0: the hint is the other correct response (index 1)
    row = rows[0]
    chat = [{"role": "user", "content": "What is 2+3?"}]
    hinted = [{"role": "user", "content": hint_prompt("What is 2+3?", "2+3 = 5, so \\boxed{5}")}]
    s = _direct_logps(model, tok, chat, row["response"])
    t = _direct_logps(model, tok, hinted, row["response"])
    np.testing.assert_allclose(row["meta"]["token_logprob"], s, atol=2e-4)
    np.testing.assert_allclose(row["meta"]["token_pmi"], t - s, atol=3e-4)
    # hedge / other means over every scored token, positions from the independent mask
    hedge_u, other_u = [], []
    for r in rows:
        ids = tok(r["response"], add_special_tokens=False)["input_ids"]
        mask = hedge_position_mask(ids, tok, "words").tolist()
        u = r["meta"]["token_pmi"]
        hedge_u += [x for x, m in zip(u, mask, strict=True) if m]
        other_u += [x for x, m in zip(u, mask, strict=True) if not m]
    assert res["n_hedge_tokens"] == len(hedge_u) and res["n_other_tokens"] == len(other_u)
    assert res["hedge_pmi_mean"] == pytest.approx(np.mean(hedge_u), abs=1e-4)
    assert res["other_pmi_mean"] == pytest.approx(np.mean(other_u), abs=1e-4)
    assert sum(d["n"] for d in res["per_word"].values()) == len(hedge_u)
    assert set(res["per_word"]) <= {"wait", "maybe", "check", "hmm", "perhaps", "actually", "might"}
    lo, hi = res["hedge_minus_other_ci"]
    assert lo <= res["hedge_minus_other"] <= hi
    assert sum(res["by_position"]["n_hedge"]) == len(hedge_u)


def test_probe_cli_json_contract_and_answer_context(tmp_path: Path) -> None:
    data = traces(tmp_path)
    result = runner.invoke(
        app, ["probe", "--model", "tiny-random", "--data", str(data), "--context", "answer", "--json"]
    )
    assert result.exit_code == 0, result.output
    res = json.loads(result.stdout.strip().splitlines()[-1])
    # the answer context needs only the gold answer: the line without one is skipped
    assert res["context"] == "answer" and res["n_responses"] == 5 and res["skipped"]["no_context"] == 1
    assert {"per_word", "hedge_pmi_mean", "other_pmi_mean"} <= set(res)
    assert all(set(d) >= {"pmi_mean", "n"} for d in res["per_word"].values())
    bad = runner.invoke(app, ["probe", "--model", "tiny-random", "--data", str(data), "--context", "oracle"])
    assert bad.exit_code == 2 and "unknown context 'oracle'" in bad.output


def test_probe_without_context_feeds_the_forks_measure(tmp_path: Path) -> None:
    data = traces(tmp_path)
    out = tmp_path / "scored.jsonl"
    res = run_probe(ProbeConfig(model="tiny-random", data=data, context="none", save_tokens=out))
    assert res["n_responses"] == 6 and "hedge_pmi_mean" not in res
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    ent = np.concatenate([r["meta"]["token_entropy"] for r in rows])
    top = np.concatenate([r["meta"]["token_is_top"] for r in rows]).astype(bool)
    assert res["mean_token_entropy"] == pytest.approx(ent.mean())
    # a random model's next-token entropy sits near log(vocab); pick a threshold inside the observed range
    threshold = float(np.median(ent))
    forks = analyze([out], AnalyzeConfig(measures=("forks",), measure_options=_opts(threshold)))["measures"]["forks"]
    assert forks["totals"]["forks"] == int((ent >= threshold).sum())
    assert forks["totals"]["forks_not_top"] == int(((ent >= threshold) & ~top).sum())
    assert forks["per_1k_tokens"] == pytest.approx(1000 * (ent >= threshold).mean())


def _opts(threshold: float):
    from sdlens.epistemic.measures import MeasureOptions

    return MeasureOptions(fork_entropy=threshold)


def test_probe_needs_prompts(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "g.jsonl", [json.dumps({"id": 1, "response": "wait"})])
    res = run_probe(ProbeConfig(model="tiny-random", data=path, context="none"))
    assert res["n_responses"] == 0 and res["skipped"]["no_prompt"] == 1
    with pytest.raises(InputError, match=r"e\.jsonl:1: field 'response': missing key"):
        run_probe(ProbeConfig(model="tiny-random", data=write_lines(tmp_path / "e.jsonl", ["{}"])))


def test_difference_ci_needs_hedges_in_most_resamples() -> None:
    from sdlens.behaviour.probe import _difference_ci

    both = {"a": np.array([-2.0, 2, 1.0, 10]), "b": np.array([-1.0, 1, 0.5, 10])}
    lo, hi = _difference_ci(both, 500, 0)
    assert lo is not None and lo <= -3 / 3 - 1.5 / 20 <= hi  # the point estimate lies inside
    # problem b has no hedge token: a quarter of the resamples hold none, so no interval is claimed
    one = {"a": np.array([-2.0, 2, 1.0, 10]), "b": np.array([0.0, 0, 0.5, 10])}
    assert _difference_ci(one, 500, 0) == [None, None]


def test_hint_nothink_shows_the_solution_without_its_thinking(tmp_path: Path) -> None:
    from sdlens.experiments.contexts import hint_prompt
    from sdlens.models import load_causal_lm, load_tokenizer, resolve_model

    data = write_lines(
        tmp_path / "t.jsonl",
        [
            json.dumps(
                {
                    "idx": 0,
                    "question": "What is 2+3?",
                    "generated_responses": [
                        "<think>Wait, 5.</think>\\boxed{5}",
                        "<think>Hmm, maybe 5.</think>\\boxed{5}",
                    ],
                    "answers_correctness": [True, True],
                }
            )
        ],
    )
    out = tmp_path / "tok.jsonl"
    run_probe(ProbeConfig(model="tiny-random", data=data, context="hint-nothink", save_tokens=out))
    row = json.loads(out.read_text().splitlines()[0])
    ref = resolve_model("tiny-random")
    tok, model = load_tokenizer(ref), load_causal_lm(ref)
    chat = [{"role": "user", "content": "What is 2+3?"}]
    shown = [{"role": "user", "content": hint_prompt("What is 2+3?", "\\boxed{5}")}]  # response 1, thinking cut
    s = _direct_logps(model, tok, chat, row["response"])
    t = _direct_logps(model, tok, shown, row["response"])
    np.testing.assert_allclose(row["meta"]["token_pmi"], t - s, atol=3e-4)
