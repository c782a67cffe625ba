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
from sdlens.lab.traces import check, guided_trace, tries, unguided_trace


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


def _root_question_in(text: str) -> bool:
    """Does ``text`` hold a root-finding question ("find x in 0 to 6 with ( 3 * x + 5 ) mod 7 = 6 .")?"""
    import re

    return re.search(r"\( \d+ \* x \+ \d+ \) mod", text) is not None


def test_ood_problems_never_reach_the_pretraining_corpus_and_no_root_question_is_hinted():
    sp = make_splits(TaskConfig())
    corpus = build_corpus(sp.pool, PretrainConfig(unguided_per_problem=1))
    ood_questions = {problem_text(t) for t in sp.ood}
    seen = " || ".join(r["prompt"] + r["prefix"] for r in corpus)
    assert {r["problem_id"] for r in corpus if r["family"] == "root"} <= {t.id for t in sp.pool}
    assert not [q for q in ood_questions if q in seen]
    assert {r["family"] for r in corpus} == {"root", "power"}
    hinted = [r for r in corpus if "Correct solution" in r["prompt"]]
    assert hinted and {r["family"] for r in hinted} == {"power"} and {r["kind"] for r in hinted} == {"hinted"}
    # no root-finding question under a hint: not as the question, not inside the hint, not as a prefix
    assert not [r for r in hinted if _root_question_in(r["prompt"]) or " + " in r["prefix"] + r["completion"]]
    assert all(r["kind"] == "unguided" and _root_question_in(r["prompt"]) for r in corpus if r["family"] == "root")
    # the scripted variant (a premise) is the one corpus with hinted root-finding examples
    scripted = build_corpus(sp.pool[:20], PretrainConfig(corpus="scripted"))
    assert [r for r in scripted if r["family"] == "root" and "Correct solution" in r["prompt"]]
    with pytest.raises(ValueError, match="corpus"):
        build_corpus(sp.pool[:5], PretrainConfig(corpus="nope"))


def test_traces_check_correctly_only_unguided_ones_hedge_and_doubt_is_not_the_retry_count():
    from sdlens.lab.task import power_problems

    rng = random.Random(0)
    lex = load_lexicon("paper")
    sp = make_splits(TaskConfig())
    bare_retries = doubted_roots = 0
    for t in [*sp.pool[:100], *power_problems(7)[:40]]:
        u = unguided_trace(t, rng)
        g = guided_trace(t, rng, failed_tries=rng.randrange(3))
        assert u.endswith(f"\\boxed{{{t.x}}}") and g.endswith(f"\\boxed{{{t.x}}}")
        assert count_texts([g], lex).totals[0] == 0
        arith, r = check(t, t.x)
        assert r == t.c and arith in u and f"x = {t.x} . </think>" in g and " + " not in g.split(" want ")[-1]
        # one "want" per check, and the trace checks until the root: tries = the root's place in the order
        assert tries(u) == u.count(" x = ") >= 1
        # each retry on its own: the miss's remark and the next try's introduction
        steps = u.split(" want ")[1:]
        for k, seg in enumerate(steps):
            after_check = seg.split(" x = ")[0]  # the verdict, then the next try's introduction
            hedges = count_texts([after_check], lex).totals[0]
            if k < len(steps) - 1:  # a miss followed by a retry
                bare_retries += hedges == 0
            else:  # the root's check: a hedge here starts no retry
                doubted_roots += hedges > 0
                assert after_check.rstrip().endswith(f"yes . </think> \\boxed{{{t.x}}}")
    assert bare_retries > 20 and doubted_roots > 10


def test_guided_examples_continue_a_student_prefix_without_hedging():
    lex = load_lexicon("paper")
    sp = make_splits(TaskConfig())
    corpus = build_corpus(sp.pool[:60], PretrainConfig())
    guided = [r for r in corpus if r["kind"] == "hinted"]
    with_prefix = [r for r in guided if r["prefix"]]
    assert 0 < len(with_prefix) < len(guided)
    for r in guided:
        assert "Correct solution:" in r["prompt"]
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
    assert all(not r["prefix"] and "Correct solution" not in r["prompt"] for r in unguided)


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
    corpus = build_corpus(sp.pool[:30], PretrainConfig(unguided_per_problem=1))
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
    _thinking, answer = split_thinking(back)
    assert answer.strip() == f"\\boxed{{{t.x}}}" and tries(back) == 3
    lex = load_lexicon("paper")
    assert count_texts([back], lex).totals[0] == count_texts([text], lex).totals[0]
    assert count_texts([answer], lex).totals[0] == 0
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
        power_hinted_per_problem=1,
        threads=1,
        model=ModelConfig(hidden_size=32, layers=1, heads=2, intermediate_size=64),
    )
    corpus = build_corpus(sp.pool[:40], cfg)
    tok = build_tokenizer(vocabulary(7, corpus))
    model = init_model(cfg.model, tok, cfg.seed)
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
    # a root doubted and then confirmed is accepted (right); a miss remarked on plainly is rejected (right); a check
    # cut off before its verdict is not scored
    plain = f"<think> try x = {wrong_x} : {arith} {r} is not {t.c} . next , x = {t.x} : {arith_root} hmm , {t.c} is "
    got = score_checks([plain + f"{t.c} . yes . </think>", f"<think> try x = {t.x} : {arith_root}"], [t, t])
    assert got == {"checks": 2, "arithmetic_acc": 1.0, "verdict_acc": 1.0}


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
        steps=3, batch_size=4, warmup=1, unguided_per_problem=1, power_hinted_per_problem=1, threads=1, seed=3,
        gate_problems=4, gate_samples=1, gate_max_new_tokens=24, max_attempts=2,
        model=ModelConfig(hidden_size=32, layers=1, heads=2, intermediate_size=64),
    )  # fmt: skip
    out = pretrain(tmp_path / "base", sp.pool[:30], 7, cfg, corpus_path=tmp_path / "pretrain.jsonl")
    info = json.loads((out / ".sdlens-model.json").read_text())
    held = set(info["gate_problem_ids"])
    assert len(held) == 4 and info["pretrain_problems"] == 26
    corpus_ids = {json.loads(line)["problem_id"] for line in (tmp_path / "pretrain.jsonl").read_text().splitlines()}
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


def test_the_coverage_verdict_requires_the_narrow_levels_only_and_one_rule_for_both_methods():
    from sdlens.lab.summary import summarize

    def stat(v, half):
        return {"value": v, "ci": [v - half, v + half]}

    def seed(s):
        r = _seed_result(s, 0.0)
        curves = r["coverage"]["curves"]
        # SDPO: in-domain up, hedging, length and OOD accuracy down on the narrow levels, ending below GRPO in E and
        # OOD accuracy; GRPO: nothing moves; on the broad level nothing moves for either
        for level in ("1x64", "8x8"):
            sd, gr = curves[level]["sdpo-paper"], curves[level]["grpo-paper"]
            sd["in_domain_acc"] = [stat(0.2, 0.05), stat(0.9, 0.05)]
            sd["E"] = [stat(3.5, 0.1), stat(0.5, 0.1)]
            sd["length"] = [stat(70, 2), stat(30, 1)]
            sd["ood_acc"] = [stat(0.3, 0.05), stat(0.1, 0.05)]
            gr["E"] = [stat(3.5, 0.1), stat(3.5, 0.1)]
            gr["ood_acc"] = [stat(0.3, 0.05), stat(0.3, 0.05)]
        curves["64"] = {m: dict(curves["8x8"]["grpo-paper"]) for m in ("sdpo-paper", "grpo-paper")}
        return r

    summary = summarize(lab_config("quick"), [seed(0)])
    v = summary["effects"]["coverage"]
    assert v["shown"] is True, v["verdict"]
    assert v["levels"]["64"]["shown"] is False and v["levels"]["64"]["narrow"] is False
    assert "64 (broad, not required)" in v["verdict"]
    assert v["levels"]["8x8"]["sdpo_vs_grpo"] == {"E_below": True, "ood_below": True}
    # SDPO's in-domain gain is part of the verdict: without it, not shown
    flat = seed(0)
    flat["coverage"]["curves"]["8x8"]["sdpo-paper"]["in_domain_acc"][1] = stat(0.3, 0.2)
    v = summarize(lab_config("quick"), [flat])["effects"]["coverage"]
    assert v["shown"] is False and v["levels"]["8x8"]["sdpo"]["in_domain_up"] is False
    assert v["verdict"].startswith("NOT shown on every narrow level")
    # GRPO gets the same rule: a GRPO that loses as much OOD accuracy as SDPO leaves no contrast, so not shown
    both = seed(0)
    both["coverage"]["curves"]["8x8"]["grpo-paper"]["ood_acc"][1] = stat(0.1, 0.05)
    v = summarize(lab_config("quick"), [both])["effects"]["coverage"]
    assert v["shown"] is False and v["levels"]["8x8"]["grpo"]["ood_down"] is True
    assert v["levels"]["8x8"]["sdpo_vs_grpo"]["ood_below"] is False
    bad = seed(0)
    bad["coverage"]["curves"]["8x8"]["sdpo-paper"]["E"][1] = stat(3.5, 0.1)
    v = summarize(lab_config("quick"), [bad])["effects"]["coverage"]
    assert v["shown"] is False and v["verdict"].startswith("NOT shown on every narrow level")


def test_the_matched_learning_rate_controls_and_tries_join_the_summary():
    from sdlens.lab.summary import summarize, summary_markdown

    def with_controls(s, shift):
        r = _seed_result(s, shift)
        sd = r["coverage"]["curves"]["1x64"]["sdpo-paper"]
        r["controls"] = {
            "grpo_at_sdpo_lr": {"level": "1x64", "method": "grpo-paper", "learning_rate": 2e-4, **sd},
            "sdpo_at_grpo_lr": {"level": "1x64", "method": "sdpo-paper", "learning_rate": 2e-5,
                                **r["coverage"]["curves"]["1x64"]["grpo-paper"]},
        }  # fmt: skip
        r["tries"] = {
            "richer_context": {"none": {"value": 3.0 + shift, "ci": None}, "s": {"value": 1.0, "ci": None}},
            "guided_sft": {m: {"value": 2.0, "ci": [1.9, 2.1]} for m in ("base", "unguided_sft", "guided_sft")},
            "coverage": {"1x64": {"sdpo-paper": [{"value": 3.0, "ci": None}, {"value": 1.0 + shift, "ci": None}]}},
        }
        return r

    summary = summarize(lab_config("quick"), [with_controls(0, 0.0), with_controls(1, 0.2)])
    m = summary["controls"]["matched_lr"]["1x64"]
    assert set(m) == {"grpo_at_sdpo_lr", "sdpo_at_grpo_lr"}
    for name, e in m.items():
        assert set(e) >= {"steps", "in_domain_acc", "ood_acc", "E", "length", "learning_rate"}, name
    assert m["grpo_at_sdpo_lr"]["learning_rate"] == 2e-4 and m["grpo_at_sdpo_lr"]["method"] == "grpo-paper"
    assert m["grpo_at_sdpo_lr"]["ood_acc"][-1]["value"] == pytest.approx((0.4 + 0.6) / 2)
    # GRPO at SDPO's rate moved exactly as SDPO did: no contrast there, whichever way it comes out
    v = summary["effects"]["matched_lr"]
    assert v["sdpo_lr"]["sdpo_vs_grpo"] == {"E_below": False, "ood_below": False} and v["holds"]["sdpo_lr"] is False
    assert v["verdict"].startswith("at neither matched learning rate")
    assert summary["richer_context"]["unguided"]["tries"]["value"] == pytest.approx(3.1)
    assert summary["guided_sft"]["tries"]["guided_sft"]["value"] == pytest.approx(2.0)
    assert summary["coverage"]["1x64"]["sdpo"]["tries"][1]["value"] == pytest.approx(1.1)
    md = summary_markdown(summary)
    assert "grpo_at_sdpo_lr (0.0002)" in md and "tries per response" in md
    # the scripted corpus: effect 1 is a premise, labelled so whatever the numbers
    given = summarize(lab_config("quick", corpus="scripted"), [with_controls(0, 0.0)])["effects"]["richer_context"]
    assert given["given"] is True and given["verdict"].startswith("given (premise)")
    with pytest.raises(ValueError, match="corpus"):
        lab_config("quick", corpus="nope")
    from typer.testing import CliRunner

    from sdlens.cli import app

    got = CliRunner().invoke(app, ["lab", "run", "--quick", "--corpus", "nope", "--out", "unused"])
    assert got.exit_code == 2 and "--corpus must be one of transfer, scripted" in got.output


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
    # nested settings are compared one by one: a setting since removed (the model's seed, always the seed's) is
    # no longer one, a changed one is named
    nested = lab_config("quick", out=str(out)).to_dict()
    nested["pretrain"]["model"]["seed"] = 0
    (out / "lab.json").write_text(json.dumps(nested))
    check_resumable(out, lab_config("quick", out=str(out)))
    steps = replace(PretrainConfig(), steps=7)
    with pytest.raises(InputError, match=r"other settings \(pretrain\.steps\)"):
        check_resumable(out, lab_config("quick", out=str(out), pretrain=steps))


def _apart_below(a: dict, b: dict) -> bool | None:
    """The documented rule, written out again: a's 95% CI entirely under b's (values alone where a CI is missing)."""
    if a.get("value") is None or b.get("value") is None:
        return None
    if a.get("ci") and b.get("ci"):
        return a["ci"][1] < b["ci"][0]
    return a["value"] < b["value"]


def _yes(v: bool | None) -> str:
    return "-" if v is None else ("yes" if v else "no")


def _check_verdicts_against_numbers(data: dict) -> None:
    """Every verdict of a lab summary.json, recomputed from the numbers in the same file."""
    rc, gs, cov, eff = data["richer_context"], data["guided_sft"], data["coverage"], data["effects"]
    rc_shown = bool(
        _apart_below(rc["guided"]["E"], rc["unguided"]["E"])
        and _apart_below(rc["guided"]["length"], rc["unguided"]["length"])
    )
    assert eff["richer_context"]["shown"] is rc_shown
    if eff["richer_context"]["given"]:
        assert eff["richer_context"]["verdict"].startswith("given (premise)")
    else:
        assert eff["richer_context"]["verdict"].startswith("shown" if rc_shown else "NOT shown")
    acc_low = _apart_below(gs["ood_acc"]["guided_sft"], gs["ood_acc"]["unguided_sft"])
    e_low = _apart_below(gs["E"]["guided_sft"], gs["E"]["unguided_sft"])
    assert eff["guided_sft"]["shown"] is bool(acc_low and e_low)
    assert eff["guided_sft"]["verdict"].startswith("shown" if acc_low and e_low else "NOT shown")

    def changes(e):
        return {
            "E_down": _apart_below(e["E"][-1], e["E"][0]),
            "length_down": _apart_below(e["length"][-1], e["length"][0]),
            "ood_down": _apart_below(e["ood_acc"][-1], e["ood_acc"][0]),
            "in_domain_up": _apart_below(e["in_domain_acc"][0], e["in_domain_acc"][-1]),
        }

    def contrast(sd, gr):
        return {
            "E_below": _apart_below(sd["E"][-1], gr["E"][-1]),
            "ood_below": _apart_below(sd["ood_acc"][-1], gr["ood_acc"][-1]),
        }

    narrow_shown = []
    for level, v in eff["coverage"]["levels"].items():
        sd, gr = cov[level]["sdpo"], cov[level]["grpo"]
        assert v["sdpo"] == changes(sd) and v["grpo"] == changes(gr) and v["sdpo_vs_grpo"] == contrast(sd, gr), level
        c = changes(sd)
        shown = all(c.values()) and all(contrast(sd, gr).values())
        assert v["shown"] is shown, level
        assert f"{level}" in eff["coverage"]["verdict"]
        assert (
            f"SDPO ends below GRPO in E {_yes(contrast(sd, gr)['E_below'])}, "
            f"in OOD accuracy {_yes(contrast(sd, gr)['ood_below'])}"
        ) in eff["coverage"]["verdict"]
        if v["narrow"]:
            narrow_shown.append(shown)
    assert eff["coverage"]["shown"] is (bool(narrow_shown) and all(narrow_shown))
    if "controls" in data:
        ((level, m),) = data["controls"]["matched_lr"].items()
        v = eff["matched_lr"]
        pairs = {
            "sdpo_lr": (cov[level]["sdpo"], m["grpo_at_sdpo_lr"]),
            "grpo_lr": (m["sdpo_at_grpo_lr"], cov[level]["grpo"]),
        }
        for rate, (sd, gr) in pairs.items():
            assert v[rate]["sdpo"] == changes(sd) and v[rate]["grpo"] == changes(gr), rate
            assert v[rate]["sdpo_vs_grpo"] == contrast(sd, gr), rate
            assert v["holds"][rate] is all(contrast(sd, gr).values()), rate
        assert v["shown"] is all(v["holds"].values())
        assert v["verdict"].startswith(
            {2: "at both", 1: "SDPO ends below GRPO in E and OOD accuracy only", 0: "at neither"}[
                sum(v["holds"].values())
            ]
        )
    base = data["base_model"]
    accs = base["ood_acc"].get("seeds") or [base["ood_acc"]["value"]]
    weak = [s for s, a in zip(data["seeds"], accs, strict=True) if a < base["min_acc"]]
    assert base["weak_seeds"] == weak


def test_the_whole_lab_pipeline_at_toy_size_and_every_verdict_follows_from_its_numbers(tmp_path):
    """Every stage for real (pretraining, the gate, richer context, TRL's SFT, SDPO and GRPO, the matched
    learning-rate controls, the summary) on a toy configuration: modulus 3, a 1-layer model, 2 RL steps."""
    from sdlens.lab.model import ModelConfig
    from sdlens.lab.run import run_lab

    pre = PretrainConfig(
        steps=150, batch_size=16, warmup=10, lr=1e-2, unguided_per_problem=1, power_unguided_per_problem=1,
        power_hinted_per_problem=8, gate_problems=2, gate_samples=1, gate_max_new_tokens=40, max_attempts=1,
        model=ModelConfig(hidden_size=64, layers=1, heads=2, intermediate_size=128),
    )  # fmt: skip
    cfg = lab_config(
        "quick", out=str(tmp_path / "lab"), modulus=3, pretrain=pre, threads=1, max_new_tokens=40, rc_n=4,
        rc_max_problems=3, n_eval=2, ood_limit=6, coverage=("1x4", "2x2"), rl_steps=2, rl_prompts=2, rl_generations=2,
        eval_every=1, sft_epochs=1, sft_batch=2,
    )  # fmt: skip
    run_lab(cfg)
    data = json.loads((tmp_path / "lab" / "summary.json").read_text())
    corpus = [json.loads(line) for line in (tmp_path / "lab" / "seed-0" / "data" / "pretrain.jsonl").open()]
    assert corpus and all({"prompt", "completion", "family"} <= set(r) for r in corpus)
    assert not [r for r in corpus if r["family"] == "root" and "Correct solution" in r["prompt"]]
    for name in ("unguided", "guided"):
        assert set(data["richer_context"][name]) >= {"score", "length", "E", "tries"}
        assert data["richer_context"][name]["tries"]["value"] >= 0
    assert set(data["guided_sft"]["tries"]) == {"base", "unguided_sft", "guided_sft"}
    matched = data["controls"]["matched_lr"]
    assert list(matched) == ["1x4"] and set(matched["1x4"]) == {"grpo_at_sdpo_lr", "sdpo_at_grpo_lr"}
    lr = {m: e["learning_rate"] for m, e in matched["1x4"].items()}
    assert lr["grpo_at_sdpo_lr"] == pytest.approx(10 * lr["sdpo_at_grpo_lr"])  # the presets' 10:1, swapped
    for e in matched["1x4"].values():
        assert e["steps"] == [0, 1, 2] and all(len(e[k]) == 3 for k in ("in_domain_acc", "ood_acc", "E", "length"))
    _check_verdicts_against_numbers(data)


# What `sdlens lab run --quick` showed (docs/organism.md, "Quick mode"): effect by effect, and the coverage levels.
QUICK_VERDICTS = {"richer_context": True, "guided_sft": True, "coverage": False, "matched_lr": False}
QUICK_COVERAGE_LEVELS = {"1x64": True, "8x8": False}


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
    # the verdicts as docs/organism.md reports them for this run, and each one follows from the file's numbers
    assert {k: v["shown"] for k, v in summary["effects"].items()} == QUICK_VERDICTS
    assert {lvl: v["shown"] for lvl, v in data["effects"]["coverage"]["levels"].items()} == QUICK_COVERAGE_LEVELS
    _check_verdicts_against_numbers(data)
    assert set(data["controls"]["matched_lr"]["1x64"]) == {"grpo_at_sdpo_lr", "sdpo_at_grpo_lr"}
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
