"""Timeouts, threads, killed and dying workers, pathological answers — with real slow inputs."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from sdlens.grading import GraderUnavailable, get_grader, get_pool
from sdlens.grading.pool import Task, WorkerPool

BOMB = r"\boxed{(x+1)^{200}(x-1)^{200}-(x^2-1)^{200}}"  # sympy expands it for a long time
NEST = r"\boxed{" + r"\frac{1}{" * 200 + "2" + "}" * 200 + "}"  # 200-deep nesting


def test_math_verify_alone_fails_in_a_thread() -> None:
    """Why the pool exists: math-verify's default signal timeouts refuse to run off the main thread."""
    from math_verify import parse

    box: list[BaseException] = []

    def run() -> None:
        try:
            parse("$1$")
        except BaseException as e:
            box.append(e)

    t = threading.Thread(target=run)
    t.start()
    t.join()
    assert box and isinstance(box[0], ValueError)


def test_sympy_bomb_times_out_with_a_reason() -> None:
    g = get_grader("math-verify", timeout=1)
    t0 = time.perf_counter()
    bomb, ok = g.grade([(BOMB, "0"), (r"\boxed{\frac{1}{2}}", "0.5")])
    assert time.perf_counter() - t0 < 10
    assert bomb.correct is False and bomb.error and bomb.error.startswith("timeout")
    assert ok.correct is True and ok.error is None


def test_pathological_answers_never_hang() -> None:
    g = get_grader("math-verify", timeout=1)
    huge_box = r"\boxed{" + "1+" * 500_000 + "1}"  # a 1 MB answer
    long_response = "blah " * 200_000 + r"\boxed{3}"  # a 1 MB response with an ordinary answer
    items = [
        (NEST, "2"),
        (r"\boxed{" + "{" * 200 + "1" + "}" * 200 + "}", "1"),
        (r"\boxed{" + "(" * 200 + "1" + ")" * 200 + "}", "2"),
        (huge_box, "1"),
        (long_response, "3"),
        (r"\boxed{9^{9^{9^{9}}}}", "1"),
    ]
    t0 = time.perf_counter()
    verdicts = g.grade(items)
    assert time.perf_counter() - t0 < 30
    assert [v.correct for v in verdicts[:4]] == [False] * 4
    assert verdicts[3].error and "too long" in verdicts[3].error
    assert verdicts[4].correct is True
    assert verdicts[5].correct is False


def test_grading_from_threads() -> None:
    """Trainers call the reward from threads: verdicts must match the main thread's, slow inputs time out."""
    g = get_grader("math-verify", timeout=1)
    items = [(BOMB, "0"), (r"\boxed{\sqrt{18}}", r"3\sqrt{2}"), (r"\boxed{7}", "8"), (r"\boxed{0.5}", r"\frac12")]
    expected = [False, True, False, True]
    results: dict[int, list] = {}
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            results[k] = g.grade(items)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors and len(results) == 3
    for verdicts in results.values():
        assert [v.correct for v in verdicts] == expected
        assert verdicts[0].error and "timeout" in verdicts[0].error


def test_hard_timeout_kills_a_stuck_worker_and_the_pool_recovers() -> None:
    # math-verify's own limit (30 s) is far above the parent's hard limit: the parent must kill the worker
    g = get_grader("math-verify", timeout=30, hard_timeout=1.5, workers=1)
    pool = get_pool(1)
    before = pool.recycled
    t0 = time.perf_counter()
    stuck, after = g.grade([(BOMB, "0"), (r"\boxed{4}", "4.0")])
    assert time.perf_counter() - t0 < 15
    assert stuck.correct is False and stuck.error and stuck.error.startswith("hard timeout")
    assert after.correct is True  # graded by the replacement worker
    assert pool.recycled == before + 1
    assert g.grade([(r"\boxed{2.5}", "3")])[0].correct is False  # still usable (a decimal: graded by a worker)


def test_dead_worker_marks_only_its_answer() -> None:
    g = get_grader("math-verify", timeout=30, workers=1)
    pool = get_pool(1)
    g.grade([(r"\boxed{0.5}", "2")])  # warm the worker (a decimal: decided by math-verify, in the pool)
    (pid,) = pool.pids()
    box: dict[str, list] = {}
    t = threading.Thread(target=lambda: box.setdefault("v", g.grade([(BOMB, "0"), (r"\boxed{5}", "5.0")])))
    t.start()
    time.sleep(1.0)
    os.kill(pid, signal.SIGKILL)
    t.join(timeout=60)
    died, ok = box["v"]
    assert died.correct is False and died.error and "died" in died.error
    assert ok.correct is True


def test_pool_is_kept_warm() -> None:
    g = get_grader("math-verify", workers=1)
    g.grade([(r"\boxed{0.5}", "2")])
    pids = get_pool(1).pids()
    assert pids
    g.grade([(r"\boxed{0.3}", "4")])
    assert get_pool(1).pids() == pids


def test_start_runs_workers_ahead_and_run_uses_them() -> None:
    pool = WorkerPool(2)
    try:
        pool.start()
        started = pool.pids()
        assert len(started) == 2  # spawned at once, importing math-verify while the caller goes on
        pool.start()  # already running: nothing new
        assert pool.pids() == started
        assert pool.run([Task("mv", ("1/2", "0.5", 5), 20.0), Task("mv", ("1/2", "0.4", 5), 20.0)]) == [
            (True, None),
            (False, None),
        ]
        assert pool.pids() == started and pool.recycled == 0
    finally:
        pool.close()
    pool.start()  # closed: starts nothing
    assert pool.pids() == []


def test_plain_numbers_are_decided_without_workers() -> None:
    """Integers, fractions and roots get math-verify's verdict from sdlens.grading.exact, with no pool at all."""
    g = get_grader("math-verify", workers=3)  # a pool setting no other test uses
    items = [(r"\boxed{17}", "17"), (r"\boxed{18}", "17"), (r"\boxed{\sqrt{18}}", r"3\sqrt{2}")]
    items += [(r"\boxed{\frac{6}{8}}", r"\frac{3}{4}"), (r"\boxed{-\frac{1}{3}}", r"\frac{1}{3}")]
    assert [v.correct for v in g.grade(items)] == [True, False, True, True, False]
    assert get_pool(3).pids() == []


def test_workers_that_cannot_start_are_an_error() -> None:
    pool = WorkerPool(1, memory_limit_mb=20)  # too little memory to even import math-verify
    try:
        with pytest.raises(GraderUnavailable):
            pool.run([Task("mv", ("1", "1", 1), 5.0)])
    finally:
        pool.close()


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="timeout"):
        get_grader("math-verify", timeout=0)
    with pytest.raises(ValueError, match="timeout"):
        get_grader("math-verify", timeout=1.5)
    with pytest.raises(ValueError, match="workers"):
        get_grader("paper-reward", workers=0)
    with pytest.raises(ValueError, match="unknown grader"):
        get_grader("nope")
    with pytest.raises(TypeError):
        get_grader("paper-reward", extract="boxed")


def test_works_from_a_script_without_a_main_guard(tmp_path) -> None:
    """Workers never re-import the caller's __main__ (multiprocessing's spawn / forkserver would)."""
    import subprocess
    import sys

    script = tmp_path / "unguarded.py"
    script.write_text(
        "from sdlens.grading import get_grader\n"
        "print([v.correct for v in get_grader('math-verify').grade([(r'\\boxed{0.5}', r'\\frac12')])])\n"
    )
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[True]"
