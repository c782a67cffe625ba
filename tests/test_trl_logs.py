"""The TRL completions reader on files written by a real TRL GRPOTrainer run (tiny random model, CPU)."""

from __future__ import annotations

import pandas as pd
import pytest

from sdlens.epistemic.analyze import AnalyzeConfig, analyze
from sdlens.io import KeyMap, detect_format, iter_samples

pytest.importorskip("trl")


def _tiny_model_and_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    chars = list("abcdefghijklmnopqrstuvwxyz0123456789 ,.?+=")
    vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2, **{c: i + 3 for i, c in enumerate(chars)}}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", pad_token="<pad>", eos_token="<eos>")
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=1,
    )
    return LlamaForCausalLM(config), tok


def test_reads_completions_logged_by_a_real_grpo_run(tmp_path) -> None:
    import torch
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    torch.manual_seed(0)
    model, tok = _tiny_model_and_tokenizer()
    ds = Dataset.from_dict({"prompt": ["what is 1+1?", "what is 2+2?"]})

    def has_a(completions, **kwargs):
        return [float("a" in c) for c in completions]

    args = GRPOConfig(
        output_dir=str(tmp_path / "run"),
        max_steps=2,
        per_device_train_batch_size=2,
        num_generations=2,
        max_completion_length=12,
        log_completions=True,
        logging_steps=1,
        report_to="none",
        use_cpu=True,
        save_strategy="no",
        disable_tqdm=True,
    )
    GRPOTrainer(model=model, processing_class=tok, reward_funcs=has_a, args=args, train_dataset=ds).train()

    run = tmp_path / "run"
    assert detect_format(run) == "trl-completions"
    samples = list(iter_samples(run, keys=KeyMap(correct_key="has_a")))
    logged = pd.concat(pd.read_parquet(p) for p in sorted((run / "completions").glob("*.parquet")))
    assert len(samples) == len(logged) == 4
    assert sorted({s.step for s in samples}) == [1, 2]
    assert [s.response for s in samples] == logged["completion"].tolist()
    assert [s.correct for s in samples] == [r >= 0.5 for r in logged["has_a"]]
    assert all(s.meta["prompt"] in ("what is 1+1?", "what is 2+2?") for s in samples)
    res = analyze([run], AnalyzeConfig(lexicon="paper", by="step"))
    words = ["wait", "hmm", "perhaps", "maybe", "actually", "alternatively", "seems", "might", "likely", "check"]
    assert res["total"] == sum(c.lower().count(w) for c in logged["completion"] for w in words)
    assert set(res["groups"]) == {"1", "2"} and res["n_responses"] == 4
