"""Judged behaviours: the shipped prompt, count parsing, and the cache per (response hash, judge, prompt version),
with the tiny random model behind the real transformers backend (its replies are noise: every call unparsed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import write_lines
from sdlens.behaviour.judge import BEHAVIOURS, JudgeConfig, Judged, load_prompt, parse_count
from sdlens.epistemic.analyze import AnalyzeConfig, analyze
from sdlens.epistemic.measures import MeasureOptions
from sdlens.errors import InputError

pytest.importorskip("torch")
pytest.importorskip("transformers")


def test_prompt_and_parsing(tmp_path: Path) -> None:
    prompt = load_prompt("behaviours-v1")
    assert prompt.version.startswith("behaviours-v1@") and set(prompt.behaviours) == set(BEHAVIOURS)
    msgs = prompt.messages("line one\n" + "x" * 20000, "backtracking")
    assert msgs[0]["role"] == "system" and "backtracking" in msgs[1]["content"]
    assert "x" * 100 not in msgs[1]["content"]  # cut at the last newline before max_chars
    assert parse_count("so <count> 3 </count>") == 3 and parse_count("<count>two</count>") is None
    assert parse_count("I count 2") is None
    edited = tmp_path / "mine.toml"
    shipped = Path(__file__).resolve().parents[1] / "src/sdlens/behaviour/prompts/behaviours-v1.toml"
    edited.write_text(shipped.read_text().replace("Reply with the number only", "Reply with a number"))
    assert load_prompt(str(edited)).version != prompt.version  # same version name, other text: another key
    broken = tmp_path / "broken.toml"
    broken.write_text(
        'version = "x"\nsystem = "s"\ntemplate = "t"\n[behaviours.verification]\nname="v"\ndefinition="d"'
    )
    with pytest.raises(InputError, match="no definition for backtracking"):
        load_prompt(str(broken))


def test_judged_measure_caches_per_response_judge_and_version(tmp_path: Path) -> None:
    traces = write_lines(
        tmp_path / "t.jsonl",
        [json.dumps({"idx": 0, "generated_responses": ["Let me verify: 2+3=5.", "First find x; then y."]})],
    )
    cache = tmp_path / "judge.jsonl"
    judge = JudgeConfig(model="tiny-random", cache=cache, max_tokens=4, device="cpu")
    config = AnalyzeConfig(measures=("judged",), measure_options=MeasureOptions(judged=Judged(judge)))
    res = analyze([traces], config)["measures"]["judged"]
    lines = [json.loads(x) for x in cache.read_text().splitlines()]
    assert len(lines) == 2 * len(BEHAVIOURS)
    assert {x["judge"] for x in lines} == {"tiny-random"} and all(len(x["response_sha256"]) == 64 for x in lines)
    # whatever the random judge wrote, each call is either parsed into a count or counted as unparsed
    unparsed = sum(x["count"] is None for x in lines)
    assert res["unparsed_per_response"] == pytest.approx(unparsed / 2)
    for b in BEHAVIOURS:
        judged = sum(x["count"] is not None for x in lines if x["behaviour"] == b)
        assert res["totals"][f"{b}_judged"] == judged
    # a rerun asks nothing new and gives the same numbers
    measure = Judged(judge)
    again = measure.judge(["Let me verify: 2+3=5.", "First find x; then y."])
    assert measure.calls == 0 and len(cache.read_text().splitlines()) == 2 * len(BEHAVIOURS)
    assert [a[b] for a in again for b in BEHAVIOURS] == [
        next(x["count"] for x in lines if x["behaviour"] == b and x["response_sha256"] == h)
        for h in dict.fromkeys(x["response_sha256"] for x in lines)
        for b in BEHAVIOURS
    ]
    # a new response costs only its own calls
    measure = Judged(judge)
    measure.judge(["Let me verify: 2+3=5.", "Backwards from the goal."])
    assert measure.calls == len(BEHAVIOURS)
    # a torn last line (a killed run) is dropped, not an error
    with open(cache, "ab") as fh:
        fh.write(b'{"response_sha256": "ab')
    assert len(Judged(judge).cache.entries) == 3 * len(BEHAVIOURS)
