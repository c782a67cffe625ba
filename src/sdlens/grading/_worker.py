"""Code that runs inside a grading worker process (its own main thread, so math-verify's signal timeouts work).

Started by :mod:`sdlens.grading.pool` as ``python _worker.py FD MEMORY_LIMIT_MB``: a plain script that imports
nothing from sdlens, only math-verify. Protocol over a ``multiprocessing.connection.Connection`` on socket FD:

- worker -> parent ``("ready", pid)`` once math-verify is imported, or ``("fatal", message)`` and exit;
- parent -> worker a list of tasks ``(task_id, kind, args)``; ``None`` asks the worker to exit;
- worker -> parent ``("result", task_id, correct, error)`` after *each* task, so the parent always knows which
  task a stuck or dead worker was on.

Task kinds: ``"mv"`` ``(gold, pred, timeout_s)`` for the math-verify grader, ``"paper"`` ``(gold, pred)`` for the
paper's training reward.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

_GOLD_CACHE: OrderedDict[tuple[str, int], Any] = OrderedDict()
_GOLD_CACHE_SIZE = 4096


class _Captured(logging.Handler):
    """Keeps math-verify's log messages (it logs timeouts as warnings) instead of printing them."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            self.messages.append(record.getMessage()[:200])


_LOG = _Captured()


def _setup_logging() -> None:
    logger = logging.getLogger("math_verify")
    logger.handlers[:] = [_LOG]
    logger.propagate = False
    logger.setLevel(logging.WARNING)


def _limit_memory(memory_limit_mb: int | None) -> None:
    if not memory_limit_mb:
        return
    try:
        import resource

        limit = int(memory_limit_mb) * 1024 * 1024
        _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ImportError, ValueError, OSError):  # not on this platform: the parent's guard still applies
        pass


def boxed(expr: str) -> str:
    return "\\boxed{" + expr + "}"


# ---------------------------------------------------------------- the math-verify grader


def _parse_gold(gold: str, timeout_s: int) -> Any:
    from math_verify import parse

    key = (gold, timeout_s)
    if key in _GOLD_CACHE:
        _GOLD_CACHE.move_to_end(key)
        return _GOLD_CACHE[key]
    parsed = parse(boxed(gold), parsing_timeout=timeout_s, raise_on_error=True)
    _GOLD_CACHE[key] = parsed
    if len(_GOLD_CACHE) > _GOLD_CACHE_SIZE:
        _GOLD_CACHE.popitem(last=False)
    return parsed


def _why(e: BaseException) -> str:
    msg = str(e).replace("\n", " ")[:120]
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


def _parse_or_why(label: str, parse_it: Callable[[], list[Any]], timeout_s: int) -> tuple[list[Any], str | None]:
    """``parse_it()``'s expressions, or none and why ``label`` could not be parsed."""
    from math_verify.errors import TimeoutException

    try:
        parsed = parse_it()
    except TimeoutException:
        return [], f"timeout: parsing the {label} took over {timeout_s} s"
    except Exception as e:
        return [], f"{label} not parseable ({_why(e)})"
    return parsed, None if parsed else f"{label} not parseable by math-verify"


def grade_mv(gold: str, pred: str, timeout_s: int) -> tuple[bool, str | None]:
    """math-verify on ``\\boxed{gold}`` vs ``\\boxed{pred}``; every failure is incorrect with a reason."""
    from math_verify import parse, verify
    from math_verify.errors import TimeoutException

    golds, why = _parse_or_why("gold answer", lambda: _parse_gold(gold, timeout_s), timeout_s)
    if why is not None:
        return False, why
    preds, why = _parse_or_why(
        "answer", lambda: parse(boxed(pred), parsing_timeout=timeout_s, raise_on_error=True), timeout_s
    )
    if why is not None:
        return False, why
    # verify() is any(compare(g, p) for g, p in product(golds, preds)); calling it pair by pair keeps that
    # verdict while recording why a pair failed (a timeout or an error in one pair no longer hides the others).
    failure: str | None = None
    for g in golds:
        for p in preds:
            try:
                if verify(g, p, timeout_seconds=timeout_s, raise_on_error=True):
                    return True, None
            except TimeoutException:
                failure = failure or f"timeout: verify took over {timeout_s} s"
            except Exception as e:
                failure = failure or f"verify error ({_why(e)})"
    return False, failure


# ---------------------------------------------------------------- the paper's training reward (docs/paper.md 8.4)


class _PaperTimeout(Exception):  # an Exception, as in the paper's code: its broad ``except Exception`` eats it
    pass


def grade_paper(gold: str, pred: str) -> tuple[bool, str | None]:
    """math-verify as the paper's reward calls it: raw ``parse(gold)``, ``parse(pred)``, ``verify`` with the
    library defaults, inside a 5 s SIGALRM; any exception means 0. The reason is recorded, the verdict is not
    changed by it."""
    from math_verify import parse, verify

    def on_alarm(signum: int, frame: object) -> None:
        raise _PaperTimeout("5 s SIGALRM")

    before = len(_LOG.messages)
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(5)
    try:
        correct = bool(verify(parse(gold), parse(pred)))
        error = None
    except Exception as e:
        correct, error = False, f"paper reward: exception treated as incorrect ({_why(e)})"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    if not correct and error is None:
        timeouts = [m for m in _LOG.messages[before:] if "imeout" in m]
        if timeouts:
            error = f"timeout inside math-verify ({timeouts[-1][:80]})"
    del _LOG.messages[:]
    return correct, error


_KINDS = {"mv": grade_mv, "paper": grade_paper}


def run_task(kind: str, args: tuple) -> tuple[bool, str | None]:
    try:
        return _KINDS[kind](*args)
    except MemoryError:
        return False, "out of memory in the grading worker"
    except RecursionError:
        return False, "recursion too deep in the grading worker"
    except Exception as e:
        return False, f"grader error ({_why(e)})"
    except BaseException as e:  # math-verify's TimeoutException and the like, escaping from anywhere
        if isinstance(e, KeyboardInterrupt | SystemExit):
            raise
        return False, f"grader error ({_why(e)})"


def _die_with_parent() -> None:
    """Linux: get SIGKILL when the parent dies, even while stuck in C code."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # not Linux: the worker still exits on EOF of its connection
        pass


def main(conn: Any, memory_limit_mb: int | None) -> None:
    """Worker entry point."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the parent, which shuts the pool down
    _die_with_parent()
    _limit_memory(memory_limit_mb)
    try:
        import math_verify  # noqa: F401

        _setup_logging()
    except BaseException as e:
        conn.send(("fatal", f"cannot import math-verify in the grading worker: {_why(e)}"))
        return
    conn.send(("ready", os.getpid()))
    while True:
        try:
            batch = conn.recv()
        except (EOFError, OSError):
            return
        if batch is None:
            return
        for task_id, kind, args in batch:
            correct, error = run_task(kind, args)
            try:
                conn.send(("result", task_id, correct, error))
            except (BrokenPipeError, OSError):
                return


if __name__ == "__main__":
    from multiprocessing.connection import Connection

    main(Connection(int(sys.argv[1])), int(sys.argv[2]) or None)
