"""The formats added for trace holders: JSON arrays, OpenAI Batch output, lighteval details, ``datasets`` folders
and trace data sets (OpenR1-Math ``generations``, OpenThoughts ``conversations``, chat ``messages``).

Fixtures are written here in each tool's real layout (``datasets`` itself writes the saved folders and the
lighteval parquet, as lighteval does with ``Dataset.to_parquet``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import write_lines
from sdlens.epistemic.analyze import AnalyzeConfig, analyze
from sdlens.errors import InputError
from sdlens.io import BadLines, KeyMap, detect_format, iter_samples


def openr1_rows() -> list[dict]:
    """Two rows shaped like open-r1/OpenR1-Math-220k."""
    return [
        {
            "problem": "What is 2+3?",
            "solution": "2+3=5",
            "answer": "5",
            "problem_type": "Algebra",
            "question_type": "math-word-problem",
            "source": "olympiads",
            "uuid": "u-1",
            "is_reasoning_complete": [True, True],
            "generations": [
                "<think>Wait, 2+3... let me recheck. 5.</think>\\boxed{5}",
                "<think>It is 6? Hmm, try again: 5.</think>\\boxed{5}",
            ],
            "correctness_math_verify": [True, True],
            "correctness_llama": None,
            "finish_reasons": None,
            "correctness_count": 2,
            "messages": [
                {"role": "user", "content": "What is 2+3?"},
                {"role": "assistant", "content": "<think>5</think>\\boxed{5}"},
            ],
        },
        {
            "problem": "What is 2*3?",
            "solution": "6",
            "answer": "6",
            "problem_type": "Algebra",
            "question_type": "math-word-problem",
            "source": "olympiads",
            "uuid": "u-2",
            "is_reasoning_complete": [True],
            "generations": ["<think>2*3 = 5. maybe not.</think>\\boxed{5}"],
            "correctness_math_verify": [False],
            "correctness_llama": None,
            "finish_reasons": None,
            "correctness_count": 0,
            "messages": [],
        },
    ]


def test_json_array_of_any_records(tmp_path: Path) -> None:
    path = tmp_path / "traces.json"
    path.write_text(json.dumps([{"id": 1, "response": "wait", "correct": True}, {"id": 2, "response": "ok"}], indent=2))
    assert detect_format(path) == "generic"
    samples = list(iter_samples(path))
    assert [(s.problem_id, s.response, s.correct) for s in samples] == [("1", "wait", True), ("2", "ok", None)]
    # a paper-format array goes the record-by-record way (the byte scanner reads JSONL only)
    paper = tmp_path / "paper.json"
    paper.write_text(json.dumps([{"idx": 0, "generated_responses": ["wait wait", "hmm"]}]))
    assert detect_format(paper) == "paper-eval"
    res = analyze([paper])
    assert res["n_problems"] == 1 and res["total"] == 3


def test_json_array_errors_name_the_record(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('[{"response": "a"}, 3]')
    with pytest.raises(InputError, match=r"bad\.json:2: record 2 is a number"):
        list(iter_samples(path))
    trunc = tmp_path / "trunc.json"
    trunc.write_text('[{"response": "a"}, {"resp')
    with pytest.raises(InputError, match=r"trunc\.json: malformed JSON array"):
        list(iter_samples(trunc, fmt="generic"))


def test_openai_batch_output(tmp_path: Path) -> None:
    def line(cid: str, body: dict | None, error: dict | None = None, status: int = 200) -> str:
        response = None if body is None else {"status_code": status, "request_id": f"req_{cid}", "body": body}
        return json.dumps({"id": f"batch_req_{cid}", "custom_id": cid, "response": response, "error": error})

    chat = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {"index": 1, "message": {"role": "assistant", "content": "maybe 4"}, "finish_reason": "stop"},
            {"index": 0, "message": {"role": "assistant", "content": "wait, 5"}, "finish_reason": "stop"},
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 7, "total_tokens": 17},
    }
    reasoning = {
        "id": "chatcmpl-2",
        "model": "deepseek-reasoner",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "\\boxed{5}", "reasoning_content": "hmm, 2+3"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"completion_tokens": 9},
    }
    responses_api = {
        "id": "resp_1",
        "object": "response",
        "model": "o4-mini",
        "status": "completed",
        "output": [
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": "Check the sum."}]},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "It is 5."}]},
        ],
        "usage": {"output_tokens": 12},
    }
    path = write_lines(
        tmp_path / "batch_output.jsonl",
        [
            line("p1", chat),
            line("p2", reasoning),
            line("p3", responses_api),
            line("p4", None, {"code": "rate_limit", "message": "too many requests"}),
        ],
    )
    assert detect_format(path) == "openai-batch"
    with pytest.raises(InputError, match=r"batch_output\.jsonl:4: field 'error': request failed: too many requests"):
        list(iter_samples(path))
    bad = BadLines(skip=True)
    samples = list(iter_samples(path, bad=bad))
    assert bad.count == 1
    assert [(s.problem_id, s.index, s.response) for s in samples] == [
        ("p1", 0, "wait, 5"),
        ("p1", 1, "maybe 4"),
        ("p2", 0, "<think>hmm, 2+3</think>\\boxed{5}"),
        ("p3", 0, "<think>Check the sum.</think>It is 5."),
    ]
    assert samples[0].n_tokens is None and samples[2].n_tokens == 9 and samples[3].n_tokens == 12
    assert samples[2].model == "deepseek-reasoner"


def test_lighteval_details_both_layouts(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    current = [
        {
            "doc": {
                "query": "Solve 2+3.",
                "choices": ["5"],
                "gold_index": 0,
                "task_name": "lighteval|math_500|0",
                "specific": None,
            },
            "model_response": {
                "input": "Solve 2+3.",
                "text": ["<think>wait, recheck</think>\\boxed{5}"],
                "text_post_processed": None,
                "input_tokens": [1, 2],
                "output_tokens": [[3, 4]],
                "logprobs": [],
            },
            "metric": {"extractive_match": 1.0},
        },
        {
            "doc": {
                "query": "Solve 2*3.",
                "choices": ["6"],
                "gold_index": 0,
                "task_name": "lighteval|math_500|0",
                "specific": None,
            },
            "model_response": {
                "input": "Solve 2*3.",
                "text": ["\\boxed{5}"],
                "text_post_processed": None,
                "input_tokens": [1],
                "output_tokens": [[3]],
                "logprobs": [],
            },
            "metric": {"extractive_match": 0.0},
        },
    ]
    path = tmp_path / "details_lighteval|math_500|0_2025-06-01T10-00-00.parquet"
    datasets.Dataset.from_list(current).to_parquet(str(path))
    assert detect_format(path) == "lighteval"
    s = list(iter_samples(path))
    assert [(x.problem_id, x.correct, x.answer, x.response) for x in s] == [
        ("0", True, "5", "<think>wait, recheck</think>\\boxed{5}"),
        ("1", False, "6", "\\boxed{5}"),
    ]
    legacy = tmp_path / "details_legacy.parquet"
    rows = [
        {
            "example": "Solve 2+3.",
            "full_prompt": "Solve 2+3.",
            "predictions": ["maybe 5", "5"],
            "gold": ["5"],
            "metrics": {"maj@4": 1.0},
            "specifics": {"x": "y"},
        }
    ]
    datasets.Dataset.from_list(rows).to_parquet(str(legacy))
    assert detect_format(legacy) == "lighteval"
    s = list(iter_samples(legacy, keys=KeyMap(correct_key="maj@4")))
    # a metric over several samples is not any one sample's correctness
    assert [(x.index, x.response, x.correct, x.answer) for x in s] == [(0, "maybe 5", None, "5"), (1, "5", None, "5")]


def test_trace_dataset_generations_and_chats(tmp_path: Path) -> None:
    rows = openr1_rows()
    path = write_lines(tmp_path / "openr1.jsonl", [json.dumps(r) for r in rows])
    assert detect_format(path) == "trace-dataset"
    s = list(iter_samples(path))
    assert [(x.problem_id, x.index, x.correct, x.answer, x.source) for x in s] == [
        ("u-1", 0, True, "5", "olympiads"),
        ("u-1", 1, True, "5", "olympiads"),
        ("u-2", 0, False, "6", "olympiads"),
    ]
    openthoughts = write_lines(
        tmp_path / "openthoughts.jsonl",
        [
            json.dumps(
                {
                    "system": "Your role as an assistant involves thoroughly exploring questions...",
                    "conversations": [
                        {"from": "user", "value": "Return your final response within \\boxed{}. What is 1+1?"},
                        {
                            "from": "assistant",
                            "value": "<|begin_of_thought|>Hmm, perhaps 2.<|end_of_thought|>"
                            "<|begin_of_solution|>\\boxed{2}<|end_of_solution|>",
                        },
                    ],
                }
            )
        ],
    )
    assert detect_format(openthoughts) == "trace-dataset"
    (t,) = list(iter_samples(openthoughts))
    assert t.response.startswith("<|begin_of_thought|>Hmm") and t.meta["prompt"].endswith("What is 1+1?")
    problems = write_lines(tmp_path / "problems.jsonl", [json.dumps({"messages": [{"role": "user", "content": "q"}]})])
    with pytest.raises(InputError, match=r"problems\.jsonl:1: field 'messages': no assistant message"):
        list(iter_samples(problems))


def test_saved_datasets_folder_and_dict(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list(openr1_rows())
    ds.save_to_disk(str(tmp_path / "one"))
    assert detect_format(tmp_path / "one") == "trace-dataset"
    assert [x.problem_id for x in iter_samples(tmp_path / "one")] == ["u-1", "u-1", "u-2"]
    datasets.DatasetDict({"train": ds, "test": ds.select([1])}).save_to_disk(str(tmp_path / "dict"))
    assert [x.problem_id for x in iter_samples(tmp_path / "dict")] == ["u-1", "u-1", "u-2", "u-2"]
    res = analyze([tmp_path / "one"], AnalyzeConfig(by="correct"))
    assert res["n_responses"] == 3 and res["groups"]["false"]["n_responses"] == 1
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "state.json").write_text('{"_data_files": [{"filename": "data-00000-of-00001.arrow"}]}')
    with pytest.raises(InputError, match="lists a shard that is not there"):
        detect_format(tmp_path / "broken")
