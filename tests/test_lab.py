"""The CPU model organism (sdlens.lab): task and splits, traces, tokenizer, pretraining, the lab run."""

from __future__ import annotations

import json
import random
from dataclasses import replace

import pytest

from sdlens.epistemic import count_texts, load_lexicon, split_thinking
from sdlens.experiments.contexts import hint_prompt
from sdlens.lab.config import lab_config
from sdlens.lab.pretrain import PretrainConfig, build_corpus, pretrain_model, vocabulary
from sdlens.lab.task import TaskConfig, make_splits, problem_text
from sdlens.lab.tokenizer import build_tokenizer
from sdlens.lab.traces import check, guided_trace, unguided_trace


def _solve(m: int, a: int, b: int, c: int) -> list[int]:
    return [x for x in range(m) if (a * x + b) % m == c]


@pytest.mark.parametrize("m", [5, 7, 11])
def test_every_problem_has_one_root_and_the_split_is_disjoint_and_deterministic(m):
    cfg = TaskConfig(modulus=m, seed=3)
    sp = make_splits(cfg)
    assert sp == make_splits(cfg)
    assert sp != make_splits(replace(cfg, seed=4))
    ids_pool = {t.id for t in sp.pool}
    ids_ood = {t.id for t in sp.ood}
    assert not ids_pool & ids_ood
    assert len(ids_pool) + len(ids_ood) == (m - 1) * m * m  # every (a != 0, b, c) once
    assert abs(len(ids_ood) / (len(ids_pool) + len(ids_ood)) - cfg.ood_fraction) < 0.01
    for t in sp.pool + sp.ood:
        assert _solve(t.m, t.a, t.b, t.c) == [t.x]


def test_task_rejects_a_composite_modulus():
    with pytest.raises(ValueError, match="prime"):
        TaskConfig(modulus=9)


def test_ood_problems_never_reach_the_pretraining_corpus():
    sp = make_splits(TaskConfig())
    corpus = build_corpus(sp.pool, PretrainConfig(unguided_per_problem=1, guided_per_problem=1))
    ood_questions = {problem_text(t) for t in sp.ood}
    seen = " || ".join(r["messages"][-1]["content"] for r in corpus)
    assert {r["problem_id"] for r in corpus} <= {t.id for t in sp.pool}
    assert not [q for q in ood_questions if q in seen]


def test_traces_check_correctly_and_only_unguided_ones_hedge():
    rng = random.Random(0)
    lex = load_lexicon("paper")
    sp = make_splits(TaskConfig())
    for t in sp.pool[:50]:
        u = unguided_trace(t, rng)
        g = guided_trace(t, rng, failed_tries=rng.randrange(3))
        assert u.endswith(f"\\boxed{{{t.x}}}") and g.endswith(f"\\boxed{{{t.x}}}")
        tries = u.count(" x = ")
        assert count_texts([u], lex).totals[0] >= tries - 1  # a hedge after every miss
        assert count_texts([g], lex).totals[0] == 0
        arith, r = check(t, t.x)
        assert r == t.c and arith in g


def test_guided_examples_continue_a_student_prefix_without_hedging():
    lex = load_lexicon("paper")
    sp = make_splits(TaskConfig())
    corpus = build_corpus(sp.pool[:60], PretrainConfig())
    guided = [r for r in corpus if r["kind"] == "guided"]
    with_prefix = [r for r in guided if r["prefix"]]
    assert 0 < len(with_prefix) < len(guided)
    for r in guided:
        assert "Correct solution:" in r["messages"][-1]["content"]
        assert count_texts([r["completion"]], lex).totals[0] == 0
        if r["prefix"]:
            # the prefix ends right after a check: on the root the continuation answers at once, on a miss it
            # states the miss plainly and jumps to the root
            last = r["prefix"].rsplit(":", 1)[-1]
            assert " want " in last and last.endswith(".")
            result, target = last.split(" , ")[-2].split(" = ")[-1], last.split("want ")[-1].rstrip(" .")
            if result == target:
                assert r["completion"].startswith("</think> \\boxed{")
            else:
                assert r["completion"].startswith(f"{result} is not {target} . so x = ")
    unguided = [r for r in corpus if r["kind"] == "unguided"]
    assert all(not r["prefix"] and "Correct solution" not in r["messages"][-1]["content"] for r in unguided)


def test_pretraining_loss_skips_prompt_and_prefix():
    from sdlens.lab.pretrain import _encode

    sp = make_splits(TaskConfig())
    corpus = [r for r in build_corpus(sp.pool[:20], PretrainConfig()) if r["prefix"]][:3]
    tok = build_tokenizer(vocabulary(7, corpus))
    for r, (ids, n_ctx) in zip(corpus, _encode(tok, corpus), strict=True):
        assert tok.decode(ids[n_ctx:], skip_special_tokens=True) == r["completion"]
        assert tok.decode(ids[:n_ctx], skip_special_tokens=True).endswith(r["prefix"])


def test_tokenizer_round_trip_chat_template_and_grading(tmp_path):
    from transformers import AutoTokenizer

    from sdlens.grading import get_grader
    from sdlens.schema import Sample

    sp = make_splits(TaskConfig())
    corpus = build_corpus(sp.pool[:30], PretrainConfig(unguided_per_problem=1, guided_per_problem=1))
    build_tokenizer(vocabulary(7, corpus), tmp_path)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    assert len(tok) < 200
    rng = random.Random(1)
    t = sp.ood[0]  # a problem the corpus never showed: its words and numbers still tokenize
    order = [*[x for x in range(t.m) if x != t.x][:2], t.x]  # two misses, then the root
    text = unguided_trace(t, rng, order=order)
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.unk_token_id not in ids
    back = tok.decode(ids, skip_special_tokens=True)
    assert back == text and back.endswith(f"\\boxed{{{t.x}}}")
    thinking, answer = split_thinking(back)
    assert "hmm" in thinking or "wait" in thinking or "seems" in thinking
    assert answer.strip() == f"\\boxed{{{t.x}}}"
    assert count_texts([back], load_lexicon("paper")).totals[0] >= 2
    assert count_texts([answer], load_lexicon("paper")).totals[0] == 0
    # the hint prompt and the SDPO teacher template differ only in newlines: the same tokens
    q = problem_text(t)
    hint = hint_prompt(q, "S")
    teacher = f"{q}\nCorrect solution:\n\nS\n\nCorrectly solve the original question."
    assert tok(hint)["input_ids"] == tok(teacher)["input_ids"]
    prompt = tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True, tokenize=False)
    assert prompt.startswith("<|im_start|>user") and prompt.endswith("<|im_start|>assistant\n")
    p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    assert tok.unk_token_id not in p_ids
    grader = get_grader("math-verify")
    good = Sample(problem_id=t.id, response=back, answer=str(t.x))
    bad = Sample(problem_id=t.id, response=back.replace(f"{{{t.x}}}", f"{{{(t.x + 1) % 7}}}"), answer=str(t.x))
    from sdlens.grading import grade_samples

    graded = list(grade_samples([good, bad], grader))
    assert [s.correct for s in graded] == [True, False]


def test_a_few_pretraining_steps_lower_the_loss():
    from sdlens.lab.model import ModelConfig, init_model

    sp = make_splits(TaskConfig())
    cfg = PretrainConfig(
        steps=12,
        batch_size=8,
        warmup=2,
        lr=3e-3,
        unguided_per_problem=1,
        guided_per_problem=1,
        threads=1,
        model=ModelConfig(hidden_size=32, layers=1, heads=2, intermediate_size=64),
    )
    corpus = build_corpus(sp.pool[:40], cfg)
    tok = build_tokenizer(vocabulary(7, corpus))
    model = init_model(cfg.model, tok)
    stats = pretrain_model(model, tok, corpus, cfg)
    assert stats["final_loss"] < stats["first_loss"] - 0.3


def test_the_gate_scores_every_check_of_a_trace():
    from sdlens.lab.gate import score_checks

    rng = random.Random(1)
    sp = make_splits(TaskConfig())
    triples = list(sp.pool[:40])
    good = [unguided_trace(t, rng) for t in triples]
    n_checks = sum(u.count(" want ") for u in good)
    assert score_checks(good, triples) == {"checks": n_checks, "arithmetic_acc": 1.0, "verdict_acc": 1.0}
    # a model that recalls roots: "yes" at a miss, a doubt at the root -> those verdicts are wrong
    t = next(t for t in triples if t.x != 0)
    wrong_x = 0
    arith, r = check(t, wrong_x)
    recalls = f"<think> try x = {wrong_x} : {arith} yes . </think> \\boxed{{{wrong_x}}}"
    arith_root, _ = check(t, t.x)
    doubts = f"<think> try x = {t.x} : {arith_root} hmm , {t.c} is not {t.c} ."
    got = score_checks([recalls, doubts], [t, t])
    assert got == {"checks": 2, "arithmetic_acc": 1.0, "verdict_acc": 0.0}
    # a check whose written result is wrong but whose verdict follows the comparison: arithmetic wrong, verdict right
    bad_arith = arith.replace(f"= {r} , want", f"= {t.c} , want")
    got = score_checks([f"<think> try x = {wrong_x} : {bad_arith} yes ."], [t])
    assert got["checks"] == 1 and got["verdict_acc"] == 1.0 and got["arithmetic_acc"] == 0.0


def test_the_gate_problems_are_kept_out_of_the_corpus_and_a_failing_model_is_pretrained_again(tmp_path):
    from sdlens.lab.gate import split_gate
    from sdlens.lab.model import ModelConfig
    from sdlens.lab.pretrain import pretrain

    sp = make_splits(TaskConfig())
    gate, rest = split_gate(sp.pool, 20, seed=3)
    assert len(gate) == 20 and len(rest) == len(sp.pool) - 20 and not {t.id for t in gate} & {t.id for t in rest}
    assert split_gate(sp.pool, 20, seed=3) == (gate, rest) and split_gate(sp.pool, 20, seed=4)[0] != gate
    # 3 steps of a tiny model cannot pass: every attempt runs, each from another initialisation
    cfg = PretrainConfig(
        steps=3, batch_size=4, warmup=1, unguided_per_problem=1, guided_per_problem=1, threads=1, seed=3,
        gate_problems=4, gate_samples=1, gate_max_new_tokens=24, max_attempts=2,
        model=ModelConfig(hidden_size=32, layers=1, heads=2, intermediate_size=64),
    )  # fmt: skip
    out = pretrain(tmp_path / "base", sp.pool[:30], 7, cfg, corpus_path=tmp_path / "corpus.jsonl")
    info = json.loads((out / ".sdlens-model.json").read_text())
    held = set(info["gate_problem_ids"])
    assert len(held) == 4 and info["pretrain_problems"] == 26
    corpus_ids = {json.loads(line)["problem_id"] for line in (tmp_path / "corpus.jsonl").read_text().splitlines()}
    assert corpus_ids and not corpus_ids & held
    assert [a["seed"] for a in info["attempts"]] == [3, 1003] and info["gate_passed"] is False
    assert all(a["gate"]["passed"] is False for a in info["attempts"])
    log = [json.loads(line) for line in (out / "pretrain_log.jsonl").read_text().splitlines()]
    assert {r["attempt"] for r in log} == {0, 1}


def test_lab_modes():
    q, f = lab_config("quick"), lab_config("full")
    assert q.seeds == 1 and f.seeds == 3
    assert f.rl_steps > q.rl_steps and len(f.coverage) > len(q.coverage) and f.rc_max_problems > q.rc_max_problems
    with pytest.raises(ValueError):
        lab_config("huge")
    assert lab_config("quick", seeds=2, threads=None).seeds == 2


def test_a_rerun_with_other_settings_is_refused_and_finished_stages_are_found(tmp_path):
    from sdlens.errors import InputError
    from sdlens.lab.run import _done, run_lab

    out = tmp_path / "lab"
    out.mkdir()
    (out / "lab.json").write_text(json.dumps(lab_config("quick", out=str(out)).to_dict()))
    with pytest.raises(InputError, match="other settings"):
        run_lab(lab_config("quick", out=str(out), seeds=2))
    exp = tmp_path / "exp"
    exp.mkdir()
    assert _done(exp) is None
    (exp / "summary.json").write_text('{"kind": "coverage"}')
    (exp / "manifest.json").write_text('{"status": "running"}')
    assert _done(exp) is None
    (exp / "manifest.json").write_text('{"status": "complete"}')
    assert _done(exp) == {"kind": "coverage"}


def test_a_finished_mitigations_stage_reruns_when_presets_were_added(tmp_path):
    from sdlens.lab.run import _mitigations_done

    cfg = lab_config("quick", mitigations=True)
    old = [m for m in cfg.mitigation_methods() if m != "ssopd"]  # a stage finished before a preset was added
    (tmp_path / "manifest.json").write_text('{"status": "complete"}')
    (tmp_path / "summary.json").write_text(json.dumps({"kind": "coverage", "methods": old}))
    assert "ssopd" in cfg.mitigation_methods() and _mitigations_done(tmp_path, cfg.mitigation_methods()) is None
    (tmp_path / "summary.json").write_text(json.dumps({"kind": "coverage", "methods": [*old, "ssopd"]}))
    assert _mitigations_done(tmp_path, cfg.mitigation_methods())["methods"][-1] == "ssopd"


def _seed_result(seed: int, shift: float) -> dict:
    """One seed's experiment summaries as run_seed returns them, with made-up numbers (only the shape matters)."""

    def stat(v):
        return {"value": v, "ci": [v - 0.01, v + 0.01]}

    def curve(*vals):
        return {k: [stat(v + shift) for v in vals] for k in ("in_domain_acc", "ood_acc", "E", "length")}

    bench = {"ood": {"score": stat(0.3), "E": stat(3.0), "length": stat(60.0)}}
    return {
        "seed": seed,
        "richer_context": {"contexts": {c: {k: stat(1.0) for k in ("score", "length", "E", "E_per_1k")}
                                        for c in ("none", "s")}},
        "guided_sft": {"models": {m: bench for m in ("base", "unguided_sft", "guided_sft")}},
        "coverage": {"curves": {level: {
            "sdpo-paper": {"steps": [0, 8], **curve(0.5, 0.4)},
            "grpo-paper": {"steps": [0, 8], **curve(0.5, 0.5)},
        } for level in ("1x64", "8x8")}},
        "mitigations": {"curves": {"8x8": {"sdpo-hedge-mask": {"steps": [0, 8], **curve(0.5, 0.45)}}}},
        "times": {},
        "split": {},
    }  # fmt: skip


def test_mitigations_are_a_stage_of_their_own_and_join_the_summary():
    from sdlens.lab.summary import summarize, summary_markdown
    from sdlens.mitigations import MITIGATION_PRESETS

    cfg = lab_config("quick", mitigations=True)
    assert cfg.all_methods()[:2] == ("sdpo-paper", "grpo-paper")
    assert set(cfg.mitigation_methods()) == set(MITIGATION_PRESETS)
    assert lab_config("quick").mitigation_methods() == ()
    with pytest.raises(ValueError, match="mitigation_level"):
        lab_config("quick", mitigations=True, mitigation_level="64")

    summary = summarize(cfg, [_seed_result(0, 0.0), _seed_result(1, 0.1)])
    # the mitigations stay out of the coverage curves (those are the two methods the verdict compares)
    assert set(summary["coverage"]["8x8"]) == {"sdpo", "grpo"}
    mit = summary["mitigations"]
    assert set(mit) == {"sdpo-paper", "grpo-paper", "sdpo-hedge-mask"}
    last = mit["sdpo-hedge-mask"]
    assert (last["level"], last["step"]) == ("8x8", 8)
    assert last["ood_acc"]["value"] == pytest.approx((0.45 + 0.55) / 2)  # mean over the two seeds, last step
    assert last["ood_acc"]["ci"][0] < last["ood_acc"]["value"] < last["ood_acc"]["ci"][1]
    assert mit["sdpo-paper"]["ood_acc"]["value"] == pytest.approx((0.4 + 0.5) / 2)  # from the coverage stage
    # against the base model (step 0), CIs apart
    assert mit["grpo-paper"]["loses_ood_acc"] is False and mit["grpo-paper"]["gains_in_domain"] is False
    assert "| sdpo-hedge-mask | 8x8 | 8 |" in summary_markdown(summary)
    one = summarize(cfg, [_seed_result(0, 0.0)])["mitigations"]  # one seed: the CIs are the runs' own, +-0.01
    assert one["sdpo-paper"]["loses_ood_acc"] is True and one["sdpo-paper"]["loses_hedging"] is True
    assert one["grpo-paper"]["loses_ood_acc"] is False and one["sdpo-hedge-mask"]["gains_in_domain"] is False
    assert "| sdpo-paper | 8x8 | 8 |" in summary_markdown(summarize(cfg, [_seed_result(0, 0.0)]))
    assert "mitigations" not in summarize(lab_config("quick"), [_seed_result(0, 0.0)])


def test_the_report_of_a_lab_run_shows_its_tables_and_verdicts(tmp_path):
    from sdlens.lab.summary import summarize
    from sdlens.report import build_report

    summary = summarize(lab_config("quick", mitigations=True), [_seed_result(0, 0.0), _seed_result(1, 0.1)])
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    html = build_report(tmp_path).read_text()
    md = (tmp_path / "report.md").read_text()
    mask = summary["mitigations"]["sdpo-hedge-mask"]
    cell = f"{mask['ood_acc']['value'] * 100:.1f} [{mask['ood_acc']['ci'][0] * 100:.1f}, "
    for text in (html, md):
        assert "4. Mitigations" in text and "sdpo-hedge-mask" in text and cell in text
        assert "1. Richer context" in text and "3. SDPO vs GRPO by coverage" in text
        assert summary["effects"]["coverage"]["verdict"][:40] in text


def test_the_coverage_verdict_requires_the_narrow_levels_only():
    from sdlens.lab.summary import summarize

    def seed(s):
        r = _seed_result(s, 0.0)
        curves = r["coverage"]["curves"]
        # SDPO: hedging, length and OOD accuracy fall on the narrow levels; on the broad level nothing moves
        for level in ("1x64", "8x8"):
            curves[level]["sdpo-paper"]["E"] = [{"value": 3.5, "ci": [3.4, 3.6]}, {"value": 0.5, "ci": [0.4, 0.6]}]
            curves[level]["sdpo-paper"]["length"] = [{"value": 70, "ci": [68, 72]}, {"value": 30, "ci": [29, 31]}]
            curves[level]["sdpo-paper"]["ood_acc"] = [
                {"value": 0.3, "ci": [0.25, 0.35]},
                {"value": 0.1, "ci": [0.05, 0.15]},
            ]
        curves["64"] = {m: dict(curves["8x8"]["grpo-paper"]) for m in ("sdpo-paper", "grpo-paper")}
        return r

    summary = summarize(lab_config("quick"), [seed(0)])
    v = summary["effects"]["coverage"]
    assert v["shown"] is True, v["verdict"]
    assert v["levels"]["64"]["shown"] is False and v["levels"]["64"]["narrow"] is False
    assert "64 (broad, not required)" in v["verdict"]
    bad = seed(0)
    bad["coverage"]["curves"]["8x8"]["sdpo-paper"]["E"][1] = {"value": 3.5, "ci": [3.4, 3.6]}
    v = summarize(lab_config("quick"), [bad])["effects"]["coverage"]
    assert v["shown"] is False and v["verdict"].startswith("NOT shown on every narrow level")


def test_an_older_run_folder_without_a_newer_setting_stays_resumable(tmp_path):
    from sdlens.errors import InputError
    from sdlens.lab.run import check_resumable

    out = tmp_path / "lab"
    out.mkdir()
    old = lab_config("quick", out=str(out)).to_dict()
    del old["mitigations"], old["mitigation_level"]  # written before the settings existed
    (out / "lab.json").write_text(json.dumps(old))
    check_resumable(out, lab_config("quick", out=str(out)))  # the missing setting is its default: same run
    # the mitigations are a stage of their own: the same folder can be rerun with them
    check_resumable(out, lab_config("quick", out=str(out), mitigations=True))
    with pytest.raises(InputError, match=r"other settings \(mitigation_level\)"):
        check_resumable(out, lab_config("quick", out=str(out), mitigations=True, mitigation_level="1x64"))
    with pytest.raises(InputError, match="other settings"):
        check_resumable(out, lab_config("quick", out=str(out), rl_steps=3))


@pytest.mark.slow
def test_quick_lab_run_end_to_end(tmp_path):
    """The demo: every stage for real; the summary holds every section; a rerun reuses every stage."""
    import time

    from sdlens.lab.run import run_lab

    cfg = lab_config("quick", out=str(tmp_path / "lab"))
    summary = run_lab(cfg)
    data = json.loads((tmp_path / "lab" / "summary.json").read_text())
    assert data["seeds"] == [0]
    for name in ("unguided", "guided"):
        assert set(data["richer_context"][name]) >= {"score", "length", "E"}
    for key in ("ood_acc", "E"):
        assert set(data["guided_sft"][key]) == {"base", "unguided_sft", "guided_sft"}
    for level in cfg.coverage:
        for method in ("sdpo", "grpo"):
            assert set(data["coverage"][level][method]) >= {"steps", "in_domain_acc", "ood_acc", "E", "length"}
    assert summary["effects"]["richer_context"]["shown"]
    attempts = data["base_model"]["pretraining_attempts"]["0"]
    assert attempts and attempts[-1]["passed"] and attempts[-1]["checks"] > 0  # the gate ran and let the model through
    t = time.perf_counter()
    run_lab(cfg)
    assert time.perf_counter() - t < 60  # every stage reused
    # the same folder rerun with the mitigations: only their stage runs, beside the finished ones
    from dataclasses import replace

    from sdlens.mitigations import MITIGATION_PRESETS

    cov_summary = tmp_path / "lab" / "seed-0" / "coverage" / "summary.json"
    before = cov_summary.stat().st_mtime_ns
    mit = run_lab(replace(cfg, mitigations=True))["mitigations"]
    assert cov_summary.stat().st_mtime_ns == before
    assert set(mit) == {"sdpo-paper", "grpo-paper", *MITIGATION_PRESETS}
    for name, entry in mit.items():
        assert entry["level"] == cfg.mitigation_level and entry["step"] == cfg.rl_steps, name
        assert 0.0 <= entry["ood_acc"]["value"] <= 1.0 and entry["length"]["value"] > 0, name
    assert (tmp_path / "lab" / "seed-0" / "mitigations" / cfg.mitigation_level).is_dir()
