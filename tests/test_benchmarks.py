"""The shipped data sets: provenance, `sdlens benchmarks list`, and the order in which a name is resolved."""

from __future__ import annotations

import hashlib
import json
import shutil

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from sdlens.benchmarks import load_benchmark, resolve_benchmark, shipped_path, shipped_sets
from sdlens.cli import app
from sdlens.errors import InputError

EVAL_SIZES = {"aime24": 30, "aime25": 30, "amc23": 40, "math500": 500}
COVERAGE_DISTINCT = {"seen_1x64": 1, "seen_8x8": 8, "seen_64": 64, "seen_128": 128, "seen_512": 512}


def test_provenance_matches_the_shipped_files() -> None:
    sets = {e["name"]: e for e in shipped_sets()}
    assert set(sets) == set(EVAL_SIZES) | set(COVERAGE_DISTINCT)
    for name, entry in sets.items():
        path = shipped_path(name)
        assert path is not None and path.is_file(), name
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"], name
        table = pq.read_table(path)
        assert table.num_rows == entry["n_problems"], name
        assert entry["kind"] == ("eval" if name in EVAL_SIZES else "coverage")
        assert entry["source"] and entry["license"]
    assert {n: sets[n]["n_problems"] for n in EVAL_SIZES} == EVAL_SIZES
    assert {n: sets[n]["n_distinct"] for n in COVERAGE_DISTINCT} == COVERAGE_DISTINCT


def test_benchmarks_list_cli() -> None:
    res = CliRunner().invoke(app, ["benchmarks", "list", "--json"])
    assert res.exit_code == 0, res.output
    listed = json.loads(res.stdout.strip().splitlines()[-1])
    assert isinstance(listed, list)
    assert {e["name"]: e["n_problems"] for e in listed if e["kind"] == "eval"} == EVAL_SIZES
    res = CliRunner().invoke(app, ["benchmarks", "list"])
    assert res.exit_code == 0
    for name in [*EVAL_SIZES, *COVERAGE_DISTINCT]:
        assert name in res.stdout
    assert shipped_sets()[0]["sha256"] in res.stdout


def test_resolution_order(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("SDLENS_DATA_DIR", raising=False)
    monkeypatch.setenv("SDLENS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # shipped data before the cache
    cached = tmp_path / "cache" / "data" / "math" / "evaluation"
    cached.mkdir(parents=True)
    shutil.copy(shipped_path("aime25"), cached / "math500.parquet")
    assert resolve_benchmark("math500") == ("math500", shipped_path("math500"))
    assert load_benchmark("math500").total == 500
    # $SDLENS_DATA_DIR before the shipped data
    env_dir = tmp_path / "env"
    env_dir.mkdir()
    shutil.copy(shipped_path("amc23"), env_dir / "math500.parquet")
    monkeypatch.setenv("SDLENS_DATA_DIR", str(env_dir))
    assert resolve_benchmark("math500") == ("math500", env_dir / "math500.parquet")
    assert load_benchmark("math500").total == 40
    assert resolve_benchmark("aime24")[1] == shipped_path("aime24")  # not in $SDLENS_DATA_DIR: shipped
    # --data-dir is searched alone
    explicit = tmp_path / "explicit"
    explicit.mkdir()
    shutil.copy(shipped_path("aime24"), explicit / "math500.parquet")
    assert load_benchmark("math500", data_dir=explicit).total == 30
    with pytest.raises(InputError, match=r"'amc23'.*hub is offline"):
        resolve_benchmark("amc23", data_dir=explicit)
    with pytest.raises(InputError, match=r"'seen_8x8': no seen_8x8\.parquet in"):
        resolve_benchmark("seen_8x8", data_dir=explicit)
    # the coverage subsets resolve by name too
    monkeypatch.delenv("SDLENS_DATA_DIR")
    assert resolve_benchmark("seen_8x8")[1] == shipped_path("seen_8x8")
    with pytest.raises(InputError, match=r"unknown benchmark 'aime23'.*seen_512"):
        resolve_benchmark("aime23")
