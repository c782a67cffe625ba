"""SdlensSDPOTrainer on a tiny random Qwen2: same loss curve as TRL's full-logit path; fallbacks; the LM head hook."""

from __future__ import annotations

import logging
import os

import pytest

torch = pytest.importorskip("torch")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
pytest.importorskip("trl.experimental.sdpo")
datasets = pytest.importorskip("datasets")
tokenizers = pytest.importorskip("tokenizers")

from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM  # noqa: E402

from sdlens.losses.heads import DistillationHiddenStates, lm_head_returns_hidden  # noqa: E402
from sdlens.train.sdpo_trainer import PAPER_SDPO_LOSS, SdlensSDPOConfig, SdlensSDPOTrainer  # noqa: E402


def byte_tokenizer() -> PreTrainedTokenizerFast:
    """Byte-level BPE without merges: 256 byte tokens + <|endoftext|> (id 256). Built locally, no hub."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(["<|endoftext|>"])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")


def tiny_model(tie: bool = False, seed: int = 0) -> Qwen2ForCausalLM:
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=320,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=tie,
        bos_token_id=256,
        eos_token_id=256,
        pad_token_id=256,
    )
    model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = 256
    model.generation_config.pad_token_id = 256
    return model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-qwen2")
    tiny_model().save_pretrained(path)
    byte_tokenizer().save_pretrained(path)
    return str(path)


def alternate_reward(completions, **kwargs):
    """Every other rollout succeeds: each rollout has a *different* successful sibling, so every sample has a
    teacher (docs/paper.md 6.3), independently of what the random model writes."""
    return [1.0 if i % 2 == 0 else 0.0 for i in range(len(completions))]


def run_sdpo(model_dir, tmp_path, chunked: bool, steps: int = 3, **overrides):
    dataset = datasets.Dataset.from_dict({"prompt": [f"Compute {i} plus {i + 1}." for i in range(8)]})
    cfg = dict(
        output_dir=str(tmp_path / ("chunked" if chunked else "naive")),
        max_steps=steps,
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=10,
        learning_rate=5e-3,
        lr_scheduler_type="constant",
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        bf16=False,  # TRL configs default to bf16 mixed precision; the equality tests compare in float32
        seed=0,
        temperature=0.9,
        num_iterations=2,  # the buffered batch is reused: rollout log-probs are computed and the IS clip is active
        distillation_mode="topk_logits",
        distillation_topk=10,
        distillation_add_tail=True,
        distillation_alpha=0.5,
        distillation_is_clip=2.0,
        teacher_model_kind="base",  # frozen initial weights (paper: EMA rate 0)
        chunked_distillation=chunked,
        distillation_chunk_size=7,  # does not divide the completion length
    )
    cfg.update(overrides)
    trainer = SdlensSDPOTrainer(
        model=model_dir,
        reward_funcs=alternate_reward,
        args=SdlensSDPOConfig(**cfg),
        train_dataset=dataset,
        processing_class=byte_tokenizer(),
    )
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "self_distillation/distillation_loss" in entry]
    return trainer, logs


def curve(logs, key):
    return [entry[key] for entry in logs]


def test_sdpo_loss_curve_chunked_equals_naive(model_dir, tmp_path):
    chunked, logs_c = run_sdpo(model_dir, tmp_path, chunked=True)
    naive, logs_n = run_sdpo(model_dir, tmp_path, chunked=False)
    assert chunked.chunked_calls >= 3 and naive.chunked_calls == 0
    assert len(logs_c) == len(logs_n) == 3
    for key in ("loss", "self_distillation/distillation_loss", "grad_norm"):
        a, b = curve(logs_c, key), curve(logs_n, key)
        assert a == pytest.approx(b, rel=1e-4, abs=1e-6), key
    assert any(v > 0 for v in curve(logs_c, "self_distillation/distillation_loss"))
    assert len(set(curve(logs_c, "loss"))) > 1  # the loss moves: the run is not degenerate
    # Adam amplifies float noise on near-zero gradients: compare against the 3 x lr = 1.5e-2 a weight can move
    for p_c, p_n in zip(chunked.model.parameters(), naive.model.parameters(), strict=True):
        torch.testing.assert_close(p_c, p_n, atol=2e-4, rtol=0)


def test_one_step_matches_trl_exactly(model_dir, tmp_path):
    """The same batch through both loss paths of one trainer: values and gradients within 1e-5 (float32)."""
    trainer, _ = run_sdpo(model_dir, tmp_path, chunked=True, steps=1)
    inputs = trainer._buffered_inputs[0]
    assert "old_per_token_logps" in inputs
    model = trainer.model

    def loss_and_grads(chunked: bool):
        trainer.chunked_distillation = chunked
        model.zero_grad(set_to_none=True)
        loss = trainer.compute_loss(model, inputs)
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    lc, gc = loss_and_grads(True)
    ln, gn = loss_and_grads(False)
    assert lc.item() > 0
    torch.testing.assert_close(lc, ln, atol=1e-5, rtol=0)
    assert gc.keys() == gn.keys() and "lm_head.weight" in gc
    for name in gc:
        torch.testing.assert_close(gc[name], gn[name], atol=1e-5, rtol=0, msg=name)

    # rollout log-probs from hidden states match TRL's full-logit computation
    args = (inputs["prompt_ids"], inputs["prompt_mask"], inputs["completion_ids"], inputs["completion_mask"])
    trainer.chunked_distillation = True
    ours = trainer._compute_rollout_logps(*args)
    trainer.chunked_distillation = False
    theirs = trainer._compute_rollout_logps(*args)
    torch.testing.assert_close(ours, theirs.float(), atol=1e-5, rtol=0)


def test_bf16_mixed_precision_step(model_dir, tmp_path):
    """Under bf16 autocast (TRL's default) the chunked path runs the LM head matmul in bf16 like the model does,
    with float32 softmax math; TRL's path does the softmax math on bf16 logits. Same loss within bf16 tolerance."""
    trainer, _ = run_sdpo(model_dir, tmp_path, chunked=True, steps=1, bf16=True)
    assert trainer._matmul_dtype() == torch.bfloat16 and trainer.chunked_calls >= 1
    inputs = trainer._buffered_inputs[0]
    with torch.no_grad():
        trainer.chunked_distillation = True
        chunked = trainer.compute_loss(trainer.model, inputs)
        trainer.chunked_distillation = False
        naive = trainer.compute_loss(trainer.model, inputs)
    assert chunked.item() > 0
    assert chunked.item() == pytest.approx(naive.item(), rel=5e-2)


@pytest.mark.parametrize("tie", [False, True])
def test_lm_head_hook_returns_hidden_states(tie):
    model = tiny_model(tie=tie, seed=1).eval()
    ids = torch.randint(0, 256, (2, 9))
    with torch.no_grad():
        logits = model(input_ids=ids).logits
        with lm_head_returns_hidden(model.get_output_embeddings()):
            hidden = model(input_ids=ids).logits
        again = model(input_ids=ids).logits  # the hook is gone afterwards
    assert hidden.shape == (2, 9, 32)
    torch.testing.assert_close(hidden @ model.get_output_embeddings().weight.T, logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(again, logits)
    assert "forward" not in model.get_output_embeddings().__dict__


def test_fallbacks(model_dir, tmp_path, caplog):
    # distillation_weight < 1 needs the full student logits for the policy loss: TRL's path, with one warning
    with caplog.at_level(logging.WARNING, logger="sdlens.train.sdpo_trainer"):
        trainer, logs = run_sdpo(model_dir, tmp_path, chunked=True, steps=1, distillation_weight=0.5)
    assert trainer.chunked_calls == 0 and len(logs) == 1
    assert "distillation_weight" in caplog.text

    # a model whose logits are not lm_head(hidden) fails the one-time check and falls back
    trainer._head_ok.clear()
    head = trainer.model.get_output_embeddings()
    inputs = trainer._buffered_inputs[0]
    original = head.forward
    head.forward = lambda x: original(x) * 2.0  # e.g. logit scaling inside the head call
    try:
        trainer.args.distillation_weight = 1.0
        reason = trainer._loss_blocker(trainer.model, inputs)
    finally:
        del head.forward
    assert reason is not None and "does not reproduce" in reason
    trainer._head_ok.clear()
    assert trainer._loss_blocker(trainer.model, inputs) is None
    out = trainer._compute_teacher_student_logits(trainer.model, trainer.teacher_model, inputs)
    assert isinstance(out, DistillationHiddenStates) and out.student_hidden.shape[-1] == 32

    # the switch: chunked=False always takes TRL's path
    trainer.chunked_distillation = False
    assert trainer._loss_blocker(trainer.model, inputs) == "chunked_distillation is off"


def test_paper_preset_config(tmp_path):
    cfg = SdlensSDPOConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", **PAPER_SDPO_LOSS)
    assert cfg.chunked_distillation and cfg.distillation_topk == 100 and cfg.distillation_add_tail
    assert cfg.distillation_alpha == 0.5 and cfg.distillation_is_clip == 2.0 and cfg.distillation_weight == 1.0
    assert (
        SdlensSDPOConfig(output_dir=str(tmp_path), use_cpu=True, chunked_distillation=False).chunked_distillation
        is False
    )
