"""Every reader on crafted files of its format, on the shipped parquet data, and on bad input."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import write_lines
from sdlens.errors import InputError
from sdlens.io import BadLines, KeyMap, detect_format, iter_problems, iter_records, iter_samples


def paper_line(idx: int, responses: list[str], correct: list[bool]) -> str:
    return json.dumps(
        {
            "idx": idx,
            "question": "q",
            "gold_answer": "5",
            "generated_responses": responses,
            "answer_responses": [r.split("</think>")[-1] for r in responses],
            "thinking_contents": [r.split("</think>")[0] for r in responses],
            "answers_correctness": correct,
            "response_token_lengths": [len(r) for r in responses],
        }
    )


def test_paper_eval(tmp_path) -> None:
    path = write_lines(
        tmp_path / "e.jsonl",
        [paper_line(7, ["wait</think>\\boxed{5}", "x</think>4"], [True, False]), "", paper_line(8, ["hmm"], [False])],
    )
    assert detect_format(path) == "paper-eval"
    s = list(iter_samples(path))
    assert [(x.problem_id, x.index, x.correct, x.answer) for x in s] == [
        ("7", 0, True, "5"),
        ("7", 1, False, "5"),
        ("8", 0, False, "5"),
    ]
    assert s[0].thinking == "wait" and s[0].answer_text == "\\boxed{5}" and s[0].n_tokens == len(s[0].response)
    alt = list(iter_samples(path, keys=KeyMap(text_key="answer_responses")))
    assert alt[0].response == "\\boxed{5}"


def test_paper_hint_combined_per_round_and_collected(tmp_path) -> None:
    combined = {
        "question": "q",
        "gold_answer": "3",
        "original_correct_count": 2,
        "data_source": "dapo",
        "original_index": 11,
        "round1_conditioning_solution": "s",
        "round1_responses": ["a", "b"],
        "round1_is_correct": [True, False],
        "round2_responses": ["c"],
        "round2_is_correct": [True],
    }
    path = write_lines(tmp_path / "chained_results_all.jsonl", [json.dumps(combined)])
    assert detect_format(path) == "paper-hint"
    s = list(iter_samples(path))
    assert [(x.context, x.response, x.correct, x.problem_id) for x in s] == [
        ("round1", "a", True, "11"),
        ("round1", "b", False, "11"),
        ("round2", "c", True, "11"),
    ]
    per_round = {
        "question": "q",
        "gold_answer": "3",
        "original_index": 4,
        "conditioning_solution": "s",
        "responses": ["x"],
        "is_correct": [False],
        "correct_count": 0,
    }
    path = write_lines(tmp_path / "round1_results.jsonl", [json.dumps(per_round)])
    assert [(x.context, x.correct) for x in iter_samples(path)] == [("round", False)]
    collected = {"question": "q", "gold_answer": "3", "correct_solutions": ["s1", "s2"], "original_index": 0}
    path = write_lines(tmp_path / "collected.jsonl", [json.dumps(collected)])
    assert [(x.context, x.correct) for x in iter_samples(path)] == [("unguided-correct", True)] * 2


def test_verl_dump_folder(tmp_path) -> None:
    d = tmp_path / "rollouts"
    d.mkdir()
    for step in (10, 2):
        rows = [
            {"input": "prompt A", "output": f"wait {step}", "gts": "1", "score": 1.0, "step": step},
            {"input": "prompt A", "output": "no", "gts": "1", "score": 0.0, "step": step},
            {"input": "prompt B", "output": "hmm", "gts": "2", "score": -1.0, "step": step, "acc": False},
        ]
        write_lines(d / f"{step}.jsonl", [json.dumps(r) for r in rows])
    assert detect_format(d) == "verl-dump"
    s = list(iter_samples(d))
    assert [x.step for x in s] == [2, 2, 2, 10, 10, 10]  # numeric order of step files
    assert [x.correct for x in s[:3]] == [True, False, False]
    assert s[0].problem_id == s[1].problem_id != s[2].problem_id and [x.index for x in s[:2]] == [0, 1]
    assert s[0].answer == "1" and s[0].meta["score"] == 1.0


def test_trl_completions_parquet(tmp_path) -> None:
    d = tmp_path / "out" / "completions"
    d.mkdir(parents=True)
    table = pa.table(
        {
            "step": [5, 5],
            "prompt": [[{"role": "user", "content": "1+1?"}], [{"role": "user", "content": "1+1?"}]],
            "completion": [[{"role": "assistant", "content": "Wait, 2"}], [{"role": "assistant", "content": "3"}]],
            "accuracy_reward": [1.0, 0.0],
            "advantage": [0.5, -0.5],
        }
    )
    pq.write_table(table, d / "completions_00005.parquet")
    assert detect_format(tmp_path / "out") == "trl-completions"
    s = list(iter_samples(tmp_path / "out", keys=KeyMap(correct_key="accuracy_reward")))
    assert [(x.response, x.step, x.correct, x.index) for x in s] == [("Wait, 2", 5, True, 0), ("3", 5, False, 1)]
    assert s[0].meta["prompt"] == "1+1?" and s[0].meta["accuracy_reward"] == 1.0


def test_generic_jsonl_and_parquet(tmp_path) -> None:
    path = write_lines(
        tmp_path / "g.jsonl",
        [
            json.dumps({"qid": "a", "text": "wait", "run": "base"}),
            json.dumps({"qid": "a", "text": ["x", "y"], "run": "sd"}),
        ],
    )
    s = list(iter_samples(path, keys=KeyMap(text_key="text", id_key="qid", group_key="run")))
    assert [(x.problem_id, x.response, x.context) for x in s] == [
        ("a", "wait", "base"),
        ("a", "x", "sd"),
        ("a", "y", "sd"),
    ]
    pq.write_table(pa.table({"response": ["a", "b"], "problem_id": ["1", "2"]}), tmp_path / "g.parquet")
    assert detect_format(tmp_path / "g.parquet") == "sdlens"
    assert [x.problem_id for x in iter_samples(tmp_path / "g.parquet")] == ["1", "2"]


def test_shipped_verl_parquets(shipped_data) -> None:
    sizes = {"aime24": 30, "aime25": 30, "amc23": 40, "math500": 500}
    for name, n in sizes.items():
        path = shipped_data / "evaluation" / f"{name}.parquet"
        assert detect_format(path) == "verl-dataset"
        problems = list(iter_problems(path))
        assert len(problems) == n
        assert all(p.messages[-1]["content"].endswith("within \\boxed{}.") for p in problems)
        assert all(p.answer for p in problems)
        assert len({p.id for p in problems}) == n
    seen = {
        f: list(iter_problems(shipped_data / "coverage" / f"seen_{f}.parquet"))
        for f in ("1x64", "8x8", "64", "128", "512")
    }
    assert {k: len({p.meta["problem_id"] for p in v}) for k, v in seen.items()} == {
        "1x64": 1,
        "8x8": 8,
        "64": 64,
        "128": 128,
        "512": 512,
    }
    ids = {k: {p.meta["problem_id"] for p in v} for k, v in seen.items()}
    assert ids["1x64"] <= ids["8x8"] <= ids["64"] <= ids["128"] <= ids["512"]
    with pytest.raises(InputError, match="holds problems, not responses"):
        list(iter_samples(shipped_data / "evaluation" / "aime24.parquet"))


BAD = [
    (b'{"idx": 1, "generated_responses": ["a"]', "malformed JSON", None),
    (b'["not", "an", "object"]', "expected a JSON object, got an array", None),
    (b'{"idx": 1, "generated_responses": "a"}', "expected list, got a string", "generated_responses"),
    (b'{"idx": 1, "generated_responses": ["a", 3]}', "item 1 is a number", "generated_responses"),
    (b'{"idx": 1, "generated_responses": ["\xff\xfe"]}', "not valid UTF-8", None),
    (
        b'{"idx": 1, "generated_responses": ["a"], "answers_correctness": [true, false]}',
        "has 2 items",
        "answers_correctness",
    ),
]


@pytest.mark.parametrize(("line", "reason", "field"), BAD)
def test_bad_lines_name_file_line_and_field(tmp_path, line: bytes, reason: str, field: str | None) -> None:
    good = paper_line(0, ["wait"], [True]).encode()
    path = write_lines(tmp_path / "bad.jsonl", [good, line, good])
    with pytest.raises(InputError) as info:
        list(iter_samples(path, "paper-eval"))
    msg = str(info.value)
    assert msg.startswith(f"{path}:2: ") and reason in msg and "\n" not in msg
    if field:
        assert f"field '{field}'" in msg
    bad = BadLines(skip=True)
    assert len(list(iter_samples(path, "paper-eval", bad=bad))) == 2
    assert bad.count == 1 and bad.examples[0] == msg


def test_paper_records_without_responses_and_python_json(tmp_path) -> None:
    """As the paper's script reads them: a record without the responses field is a problem with no responses, and
    NaN / Infinity (which json.dumps writes) are read; both are counted, not skipped."""
    good = paper_line(0, ["wait"], [True]).encode()
    lines = [good, b'{"idx": 1}', b'{"idx": 2, "score": NaN, "generated_responses": ["hmm", "ok"]}', b"\x0b", good]
    path = write_lines(tmp_path / "odd.jsonl", lines)
    bad = BadLines()
    samples = list(iter_samples(path, "paper-eval", bad=bad))
    assert [s.response for s in samples] == ["wait", "hmm", "ok", "wait"]
    assert (bad.count, bad.without_responses, bad.python_json) == (0, 1, 1)


def test_empty_and_missing_files(tmp_path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(InputError, match="empty"):
        list(iter_samples(empty, "paper-eval"))
    with pytest.raises(InputError, match="no such file"):
        list(iter_samples(tmp_path / "nope.jsonl"))
    with pytest.raises(InputError, match="unknown format"):
        list(iter_samples(write_lines(tmp_path / "x.jsonl", ["{}"]), "csv"))


def test_iter_records_is_the_public_row_reader(tmp_path):
    """`sdlens.io.iter_records`: the same rows from JSONL, Parquet and a JSON array; one-line errors; empty files."""
    rows = [{"q": "1+1", "a": 2}, {"q": "2+2", "a": 4}]
    (tmp_path / "r.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "r.parquet")
    (tmp_path / "r.json").write_text(json.dumps(rows))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "r.pq")
    for name in ("r.jsonl", "r.parquet", "r.json", "r.pq"):
        assert list(iter_records(str(tmp_path / name))) == [(1, rows[0]), (2, rows[1])]
    with pytest.raises(InputError, match=r"none\.parquet: cannot open"):
        list(iter_records(tmp_path / "none.parquet"))
    (tmp_path / "junk.parquet").write_text("not parquet\n")
    with pytest.raises(InputError, match=r"junk\.parquet: not a readable Parquet file \(") as e:
        list(iter_records(tmp_path / "junk.parquet"))
    assert "\n" not in str(e.value)
    (tmp_path / "bad.jsonl").write_text('{"q": 1}\n{"q": \n')
    with pytest.raises(InputError, match=r"bad\.jsonl:2: ") as e:
        list(iter_records(tmp_path / "bad.jsonl"))
    assert "\n" not in str(e.value)
    bad = BadLines(skip=True)
    assert list(iter_records(tmp_path / "bad.jsonl", bad)) == [(1, {"q": 1})] and bad.count == 1
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(InputError, match="file is empty"):
        list(iter_records(tmp_path / "empty.jsonl"))
    assert list(iter_records(tmp_path / "empty.jsonl", allow_empty=True)) == []
    with pytest.raises(InputError, match=r"bad\.jsonl:2: "):  # allow_empty lets nothing else through
        list(iter_records(tmp_path / "bad.jsonl", allow_empty=True))
