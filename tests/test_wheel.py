"""The wheel is all a user gets: it holds the data and the compiled counter, and it works from any folder, offline,
with an empty cache (and without a C compiler, on the pure-Python counter)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from sdlens.benchmarks import shipped_sets

ROOT = Path(__file__).resolve().parents[1]


def _source_copy(dest: Path) -> Path:
    """The files a wheel is built from, without build leftovers (compiled modules, egg-info, caches)."""
    dest.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, dest / name)
    shutil.copytree(
        ROOT / "src", dest / "src", ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.pyd", "*.egg-info")
    )
    return dest


def _build_wheel(tmp: Path, env: dict[str, str] | None = None) -> Path:
    src = _source_copy(tmp / "src-copy")
    cmd = [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q"]
    res = subprocess.run([*cmd, "-w", str(tmp / "dist")], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    (wheel,) = (tmp / "dist").glob("sdlens-*.whl")
    return wheel


def _install(wheel: Path, target: Path) -> dict[str, str]:
    """Unpack the wheel into ``target`` (no dependencies: they come from this environment) and return an environment
    in which ``python -m sdlens.cli`` runs from it, offline, with an empty cache."""
    res = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    env = {k: v for k, v in os.environ.items() if k not in ("SDLENS_DATA_DIR", "SDLENS_PURE_PYTHON")}
    cache = target.parent / "empty-cache"
    cache.mkdir()
    env.update(PYTHONPATH=str(target), SDLENS_CACHE=str(cache), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return env


def _run(env: dict[str, str], cwd: Path, *args: str) -> str:
    res = subprocess.run(
        [sys.executable, "-m", "sdlens.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert res.returncode == 0, f"{args}: {res.stderr[-3000:]}"
    return res.stdout


def test_wheel_holds_the_data_and_the_counter_and_runs_offline(tmp_path) -> None:
    wheel = _build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    for entry in shipped_sets():
        assert f"sdlens/data/{entry['file']}" in names
    assert "sdlens/data/provenance.json" in names
    assert {f"sdlens/epistemic/lexicons/{n}.toml" for n in ("paper", "words", "companion")} <= names
    # the judge's prompt and the HTML report's template are read at run time
    assert {"sdlens/behaviour/prompts/behaviours-v1.toml", "sdlens/report/templates/report.html.j2"} <= names
    if shutil.which((sysconfig.get_config_var("CC") or "cc").split()[0]):
        assert any(n.startswith("sdlens/epistemic/_fastcount") and n.endswith((".so", ".pyd")) for n in names)

    env = _install(wheel, tmp_path / "site")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run(
        [sys.executable, "-c", "import sdlens; print(sdlens.__file__)"], cwd=elsewhere, env=env, capture_output=True
    )
    assert Path(where.stdout.decode().strip()).is_relative_to(tmp_path / "site")

    listed = json.loads(_run(env, elsewhere, "benchmarks", "list", "--json").strip().splitlines()[-1])
    assert {e["name"]: e["n_problems"] for e in listed}["math500"] == 500

    out = elsewhere / "eval"
    args = ["eval", "--model", "tiny-random", "--benchmark", "math500", "--limit", "2", "--n", "1"]
    _run(env, elsewhere, *args, "--max-tokens", "8", "--out", str(out), "--no-progress")
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 2 and all(s["source"] == "math500" for s in samples)
    manifest = json.loads((out / "manifest.json").read_text())
    assert Path(manifest["data"]["path"]).is_relative_to(tmp_path / "site")


def test_wheel_without_a_c_compiler_counts_in_python(tmp_path) -> None:
    env = {**os.environ, "CC": "/bin/false", "LDSHARED": "/bin/false"}
    wheel = _build_wheel(tmp_path, env=env)
    names = zipfile.ZipFile(wheel).namelist()
    assert not any(n.startswith("sdlens/epistemic/_fastcount") and n.endswith((".so", ".pyd")) for n in names)
    run_env = _install(wheel, tmp_path / "site")
    trace = tmp_path / "run.jsonl"
    responses = ["Wait, hmm. Maybe it is likely 3.", "İ think K is right; unlikely", "no hedge"]
    trace.write_text(json.dumps({"idx": 0, "generated_responses": responses}) + "\n")
    got = json.loads(_run(run_env, tmp_path, "analyze", str(trace), "--json"))
    words = ["wait", "hmm", "perhaps", "maybe", "actually", "alternatively", "seems", "might", "likely", "check"]
    assert got["total"] == sum(r.lower().count(w) for r in responses for w in words)
    probe = "import sdlens.epistemic.kernel as k; print(k.compiled_kernel() is None)"
    res = subprocess.run([sys.executable, "-c", probe], env=run_env, cwd=tmp_path, capture_output=True, text=True)
    assert res.stdout.strip() == "True"


@pytest.mark.parametrize("flag", ["--help"])
def test_cli_help_lists_benchmarks(flag: str) -> None:
    res = subprocess.run([sys.executable, "-m", "sdlens.cli", flag], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "benchmarks" in res.stdout
