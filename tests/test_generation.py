"""Generation backends: the transformers decode loop against transformers' own generate, seeds, sampling filters,
presets, and one-line errors. The openai backend against a real server is in test_generation_openai.py."""

from __future__ import annotations

import os

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from sdlens.errors import InputError  # noqa: E402
from sdlens.generation import PRESETS, GenRequest, SamplingConfig, get_preset, make_backend, sample_seed  # noqa: E402
from sdlens.generation.hf import TransformersBackend  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")

Q1 = [{"role": "user", "content": "What is 12*7?"}]
Q2 = [{"role": "user", "content": "Convert the point $(0,3)$ to polar coordinates. Please reason step by step."}]
GREEDY = SamplingConfig(temperature=0.0, top_p=1.0, max_tokens=24, n=1, enable_thinking=None)
SAMPLED = SamplingConfig(temperature=0.8, top_p=0.95, max_tokens=24, n=4, enable_thinking=None)


@pytest.fixture(scope="module")
def tiny() -> TransformersBackend:
    # CPU fp32 even where a GPU is visible: the exact batch-independence checked below is a CPU fp32 property (on a
    # GPU in bf16, batch composition changes the floating-point results, so samples can differ)
    return TransformersBackend("tiny-random", batch_size=8, device="cpu")


def test_presets_match_the_paper():
    think, nothink = PRESETS["paper-think"], PRESETS["paper-nothink"]
    assert (think.temperature, think.top_p, think.top_k, think.n, think.max_tokens, think.enable_thinking) == (
        0.6,
        0.95,
        None,
        16,
        38_912,
        True,
    )
    assert (nothink.temperature, nothink.top_p, nothink.top_k, nothink.n, nothink.enable_thinking) == (
        0.7,
        0.8,
        None,
        16,
        False,
    )
    assert PRESETS["greedy"].greedy and PRESETS["greedy"].n == 1
    assert get_preset("paper-think").with_overrides(n=4, max_tokens=None).n == 4
    with pytest.raises(InputError, match="unknown preset 'fast'"):
        get_preset("fast")
    with pytest.raises(InputError, match="top_p"):
        SamplingConfig(top_p=0)


def test_sample_seed_is_stable_and_distinct():
    assert sample_seed(0, "p1", 0) == sample_seed(0, "p1", 0)
    seeds = {sample_seed(s, p, i) for s in range(3) for p in ("a", "b", "test/x.json") for i in range(16)}
    assert len(seeds) == 3 * 3 * 16
    assert all(0 <= s < 2**31 for s in seeds)


def _hf_greedy(be: TransformersBackend, messages, max_new: int) -> list[int]:
    ids = torch.tensor([be.render(messages, GREEDY)], device=be.device)
    out = be.model.generate(
        ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=max_new, pad_token_id=be.pad_id
    )
    gen = out[0, ids.shape[1] :].tolist()
    return gen[: next((i for i, t in enumerate(gen) if t in be.eos_ids), len(gen))]


def test_greedy_equals_transformers_generate_with_left_padding(tiny):
    # two prompts of different lengths in one left-padded batch, each against generate() on its own
    res = tiny.generate([GenRequest(Q1), GenRequest(Q2)], GREEDY)
    for messages, r in zip((Q1, Q2), res, strict=True):
        assert r.token_ids == _hf_greedy(tiny, messages, 24)
        assert r.finish_reason == "length" and r.n_generated == 24


def test_sample_depends_only_on_its_seed(tiny):
    reqs = [GenRequest(Q1 if i % 2 else Q2, seed=100 + i) for i in range(6)]
    together = tiny.generate(reqs, SAMPLED)
    alone = [tiny.generate([r], SAMPLED)[0] for r in (reqs[3], reqs[0])]
    reordered = tiny.generate([reqs[5], reqs[3], reqs[1]], SAMPLED)
    assert alone[0].token_ids == together[3].token_ids
    assert alone[1].token_ids == together[0].token_ids
    assert [r.token_ids for r in reordered] == [together[5].token_ids, together[3].token_ids, together[1].token_ids]
    again = tiny.generate(reqs, SAMPLED)
    assert [r.text for r in again] == [r.text for r in together]
    other_seed = tiny.generate([GenRequest(Q1, seed=999)], SAMPLED)[0]
    assert other_seed.token_ids != together[1].token_ids


def test_logprobs_are_the_raw_model_distribution(tiny):
    [r] = tiny.generate([GenRequest(Q1)], GREEDY, logprobs=True)
    assert len(r.logprobs) == r.n_generated == 24
    ids = torch.tensor([tiny.render(Q1, GREEDY) + r.token_ids], device=tiny.device)
    with torch.inference_mode():
        logits = tiny.model(ids).logits[0].float()
    lp = torch.log_softmax(logits, -1)
    p = len(tiny.render(Q1, GREEDY))
    expected = [lp[p - 1 + j, t].item() for j, t in enumerate(r.token_ids)]
    assert r.logprobs == pytest.approx(expected, abs=1e-4)
    assert all(x <= 0 for x in r.logprobs)


def test_top_k_1_and_tiny_top_p_are_greedy(tiny):
    greedy = tiny.generate([GenRequest(Q1)], GREEDY)[0].token_ids
    k1 = SamplingConfig(temperature=1.5, top_p=1.0, top_k=1, max_tokens=24, n=1, enable_thinking=None)
    p0 = SamplingConfig(temperature=1.5, top_p=1e-6, max_tokens=24, n=1, enable_thinking=None)
    assert tiny.generate([GenRequest(Q1, seed=5)], k1)[0].token_ids == greedy
    assert tiny.generate([GenRequest(Q1, seed=6)], p0)[0].token_ids == greedy


def test_top_p_filter_keeps_the_nucleus():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    s = SamplingConfig(temperature=1.0, top_p=0.75, max_tokens=1, n=1)
    seen = set()
    for seed in range(200):
        g = torch.Generator().manual_seed(seed)
        seen.add(int(TransformersBackend._choose(logits, s, [g])[0]))
    assert seen == {0, 1}  # 0.5 + 0.3 >= 0.75: the 0.15 and 0.05 tokens are cut


def test_chat_template_kwargs_reach_the_template(tiny):
    on = tiny.render(Q1, SamplingConfig(enable_thinking=True))
    off = tiny.render(Q1, SamplingConfig(enable_thinking=False))
    unset = tiny.render(Q1, SamplingConfig(enable_thinking=None))
    assert on == unset
    assert tiny.tokenizer.decode(off).endswith("<think>\n\n</think>\n\n")


def test_max_tokens_is_capped_by_the_context(tiny):
    s = SamplingConfig(temperature=0.0, top_p=1.0, max_tokens=10_000, n=1)
    long_prompt = [1] * (tiny.max_positions - 3)
    [r] = tiny.generate_ids([long_prompt], [0], s)
    assert r.n_generated <= 3 and r.finish_reason == "length"


def test_one_line_errors():
    with pytest.raises(InputError, match="unknown backend 'tgi'"):
        make_backend("tgi", "tiny-random")
    with pytest.raises(InputError, match="needs --base-url"):
        make_backend("openai", "tiny-random")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no GPU is visible") as e:
            make_backend("transformers", "tiny-random", device="cuda")
        assert "\n" not in str(e.value)
    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(InputError, match="backend vllm needs vLLM") as e:
            make_backend("vllm", "tiny-random")
        assert "\n" not in str(e.value)


def test_unreachable_server_is_one_line():
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(InputError, match=f"cannot reach http://127.0.0.1:{port}/v1/models") as e:
        make_backend("openai", "tiny-random", base_url=f"http://127.0.0.1:{port}")
    assert "\n" not in str(e.value)
