from __future__ import annotations

import pytest

from sdlens.errors import InputError
from sdlens.io import read_records
from sdlens.schema import JsonlWriter, Problem, Sample, write_jsonl, write_parquet


def _samples() -> list[Sample]:
    return [
        Sample(
            problem_id="p1",
            index=0,
            response="wait, 2",
            correct=True,
            step=3,
            meta={"x": [1, 2]},
            sampling={"temperature": 0.6},
        ),
        Sample(problem_id="p1", index=1, response="é \\boxed{3}", correct=False, answer="2"),
    ]


def test_jsonl_roundtrip_and_append(tmp_path) -> None:
    path = tmp_path / "s.jsonl"
    assert write_jsonl(path, _samples()) == 2
    assert list(read_records(path)) == _samples()
    write_jsonl(path, _samples()[:1], append=True)
    assert len(list(read_records(path))) == 3


def test_parquet_roundtrip_is_atomic(tmp_path) -> None:
    path = tmp_path / "s.parquet"
    write_parquet(path, _samples())
    assert list(read_records(path)) == _samples()
    assert [p.name for p in tmp_path.iterdir()] == ["s.parquet"]  # no temporary file left behind
    problems = [Problem(id="a", messages=[{"role": "user", "content": "1+1?"}], answer="2", source="t")]
    write_parquet(tmp_path / "p.parquet", problems)
    assert list(read_records(tmp_path / "p.parquet", Problem)) == problems


def test_failed_write_leaves_previous_file_intact(tmp_path) -> None:
    path = tmp_path / "s.jsonl"
    write_jsonl(path, _samples())

    def broken():
        yield _samples()[0]
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        write_jsonl(path, broken())
    assert list(read_records(path)) == _samples()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.jsonl"]


def test_append_drops_a_torn_last_line(tmp_path) -> None:
    path = tmp_path / "s.jsonl"
    write_jsonl(path, _samples())
    with open(path, "ab") as f:
        f.write(b'{"problem_id": "p2", "resp')  # what a killed writer leaves
    with JsonlWriter(path) as w:
        w.write(Sample(problem_id="p3", response="ok"))
    got = list(read_records(path))
    assert [s.problem_id for s in got] == ["p1", "p1", "p3"]


def test_record_type_errors_name_line_and_field(tmp_path) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text('{"problem_id": "a", "response": "x"}\n{"problem_id": "b", "index": "one"}\n')
    with pytest.raises(InputError) as info:
        list(read_records(path))
    assert str(info.value) == f"{path}:2: field 'index': expected int, got str"
