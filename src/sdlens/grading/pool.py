"""A small pool of grading worker processes with a hard wall-clock guard per task.

Why not ``concurrent.futures.ProcessPoolExecutor``: when one of its workers dies, every task in flight fails
(``BrokenProcessPool``) and a task stuck in C code cannot be stopped. Here each worker reports after every task,
so the parent always knows which task a worker is on; a worker that runs past a task's hard limit is killed, a
worker that dies is noticed, and in both cases only *that* task is marked (incorrect, with the reason) while the
rest of its batch is queued again and a fresh worker takes the slot.

Workers are plain subprocesses (``python -P .../_worker.py``; ``-P`` keeps the script's folder off ``sys.path``)
talking over a socket pair: no ``fork`` of a process that may have threads, and unlike multiprocessing's
``spawn`` / ``forkserver`` the caller's ``__main__`` is never re-imported, so grading works from scripts without a
``__main__`` guard, notebooks and trainer threads alike. A worker imports only math-verify (under a second). The
pool is safe to use from any thread (one batch at a time per pool) and is kept warm across calls in a process:
:func:`get_pool` returns the same pool for the same settings. POSIX only (math-verify's timeouts need ``SIGALRM``).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

__all__ = ["GraderUnavailable", "Task", "WorkerPool", "default_workers", "get_pool", "shutdown_pools"]

STARTUP_TIMEOUT_S = 120.0


class GraderUnavailable(RuntimeError):
    """The grading workers cannot run (math-verify missing, workers dying at start-up)."""


@dataclass(frozen=True, slots=True)
class Task:
    kind: str  # "mv" or "paper" (see sdlens.grading._worker)
    args: tuple
    hard_limit_s: float


Result = tuple[bool, str | None]


@dataclass
class _Slot:
    proc: Any = None
    conn: Connection | None = None
    ready: bool = False
    started_at: float = 0.0
    inflight: deque[int] = field(default_factory=deque)
    busy_since: float = 0.0


def default_workers() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        n = os.cpu_count() or 1
    return max(1, min(n, 8))


WORKER_SCRIPT = Path(__file__).with_name("_worker.py")


class WorkerPool:
    """``workers`` grading processes; :meth:`run` grades a list of tasks and returns results in order."""

    def __init__(self, workers: int | None = None, *, memory_limit_mb: int | None = 4096, chunk_size: int = 16):
        self.workers = max(1, int(workers or default_workers()))
        self.memory_limit_mb = memory_limit_mb
        self.chunk_size = max(1, chunk_size)
        self._slots = [_Slot() for _ in range(self.workers)]
        self._lock = threading.Lock()
        self._closed = False
        self.recycled = 0  # workers killed or found dead and replaced, over the pool's life

    # -------------------------------------------------------------- worker lifecycle

    def _start(self, slot: _Slot) -> None:
        ours, theirs = socket.socketpair()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-P", str(WORKER_SCRIPT), str(theirs.fileno()), str(self.memory_limit_mb or 0)],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C in a terminal reaches the parent only; it stops the workers
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        slot.proc, slot.conn, slot.ready = proc, Connection(ours.detach()), False
        slot.started_at = time.monotonic()
        slot.inflight.clear()

    def _stop(self, slot: _Slot, *, kill: bool) -> int | None:
        proc, conn = slot.proc, slot.conn
        slot.proc, slot.conn, slot.ready = None, None, False
        if conn is not None:
            if not kill:
                with contextlib.suppress(OSError, ValueError):
                    conn.send(None)
            conn.close()
        if proc is None:
            return None
        if kill:
            proc.kill()
        try:
            return proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - a worker ignoring the exit request
            proc.kill()
            return proc.wait()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for slot in self._slots:
                self._stop(slot, kill=False)

    def start(self) -> None:
        """Start the workers that are not running, without waiting for them: they import math-verify (about a
        second) while the caller does other work, and the next :meth:`run` uses them. Does nothing while a run
        is in progress (it starts its own) or after :meth:`close`."""
        if not self._lock.acquire(blocking=False):
            return
        try:
            if self._closed:
                return
            for slot in self._slots:
                if slot.proc is None:
                    self._start(slot)
        finally:
            self._lock.release()

    def pids(self) -> list[int]:
        return [s.proc.pid for s in self._slots if s.proc is not None and s.proc.poll() is None]

    # -------------------------------------------------------------- grading

    def run(self, tasks: Sequence[Task], on_result: Callable[[int, Result], None] | None = None) -> list[Result]:
        """Grade ``tasks``; ``on_result(i, result)`` is called as each finishes (in the calling thread)."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the grading pool is closed")
            try:
                return self._run(tasks, on_result)
            except BaseException:
                # interrupted (Ctrl-C, an error in on_result...): workers still busy would later send results
                # of this run, so stop them; the next run starts fresh ones.
                for slot in self._slots:
                    if slot.inflight or not slot.ready:
                        self._stop(slot, kill=True)
                raise

    def _run(self, tasks: Sequence[Task], on_result: Callable[[int, Result], None] | None) -> list[Result]:
        results: list[Result | None] = [None] * len(tasks)
        if not tasks:
            return []
        pending: deque[int] = deque(range(len(tasks)))
        remaining = len(tasks)
        start_failures = 0
        for slot in self._slots:
            if slot.proc is None or slot.proc.poll() is not None:
                if slot.proc is not None:
                    self._stop(slot, kill=True)
                self._start(slot)

        def finish(i: int, res: Result) -> None:
            nonlocal remaining
            if results[i] is None:
                results[i] = res
                remaining -= 1
                if on_result is not None:
                    on_result(i, res)

        def fail_slot(slot: _Slot, reason: str, *, kill: bool) -> None:
            """The worker is gone or stuck: its current task gets ``reason``, the rest go back in the queue."""
            nonlocal start_failures
            was_ready = slot.ready
            code = self._stop(slot, kill=kill)
            self.recycled += 1
            if slot.inflight:
                current = slot.inflight.popleft()
                if "{code}" in reason:
                    reason = reason.format(code=code)
                finish(current, (False, reason))
                pending.extendleft(reversed(slot.inflight))
                slot.inflight.clear()
            elif not was_ready:
                start_failures += 1
                if start_failures >= 3:
                    raise GraderUnavailable(f"grading workers die at start-up (exit code {code})")
            self._start(slot)

        while remaining:
            now = time.monotonic()
            # hand work to idle ready workers
            share = max(1, min(self.chunk_size, -(-len(pending) // (2 * self.workers)) if pending else 1))
            for slot in self._slots:
                if slot.ready and not slot.inflight and pending:
                    chunk = [pending.popleft() for _ in range(min(share, len(pending)))]
                    try:
                        slot.conn.send([(i, tasks[i].kind, tasks[i].args) for i in chunk])  # type: ignore[union-attr]
                    except (OSError, ValueError):
                        slot.inflight.extend(chunk)
                        fail_slot(slot, "grading worker died (exit code {code})", kill=True)
                        continue
                    slot.inflight.extend(chunk)
                    slot.busy_since = now
            # wait for news, at most until the nearest deadline
            conns = [s.conn for s in self._slots if s.conn is not None]
            timeout = 0.5
            for slot in self._slots:
                if slot.inflight:
                    left = slot.busy_since + tasks[slot.inflight[0]].hard_limit_s - now
                    timeout = min(timeout, max(left, 0.0))
            for conn in wait(conns, timeout=timeout):
                found = [s for s in self._slots if s.conn is conn]
                if not found:
                    continue
                slot = found[0]
                while slot.conn is conn:
                    try:
                        if not slot.conn.poll():
                            break
                        msg = slot.conn.recv()
                    except (EOFError, OSError):
                        fail_slot(slot, "grading worker died (exit code {code})", kill=True)
                        break
                    if msg[0] == "result":
                        _, i, correct, error = msg
                        if slot.inflight and slot.inflight[0] == i:
                            slot.inflight.popleft()
                        slot.busy_since = time.monotonic()
                        finish(i, (bool(correct), error))
                    elif msg[0] == "ready":
                        slot.ready = True
                        start_failures = 0
                    elif msg[0] == "fatal":
                        self._stop(slot, kill=True)
                        raise GraderUnavailable(msg[1])
            # enforce the hard limits
            now = time.monotonic()
            for slot in self._slots:
                if slot.proc is None:
                    continue
                if slot.inflight:
                    limit = tasks[slot.inflight[0]].hard_limit_s
                    if now - slot.busy_since > limit:
                        fail_slot(slot, f"hard timeout: worker killed after {limit:g} s on this answer", kill=True)
                elif not slot.ready and now - slot.started_at > STARTUP_TIMEOUT_S:
                    self._stop(slot, kill=True)
                    raise GraderUnavailable(f"grading worker did not start within {STARTUP_TIMEOUT_S:g} s")
                if slot.proc is not None and slot.proc.poll() is not None and not slot.conn.poll():  # type: ignore[union-attr]
                    fail_slot(slot, "grading worker died (exit code {code})", kill=True)
        return [r for r in results if r is not None]


# ---------------------------------------------------------------- warm pools, one per setting per process

_POOLS: dict[tuple, WorkerPool] = {}
_POOLS_LOCK = threading.Lock()
_OWNER = os.getpid()


def get_pool(workers: int | None = None, *, memory_limit_mb: int | None = 4096) -> WorkerPool:
    """The process-wide warm pool for these settings (created on first use, closed at exit)."""
    global _OWNER
    key = (max(1, int(workers or default_workers())), memory_limit_mb)
    with _POOLS_LOCK:
        if os.getpid() != _OWNER:  # a forked child must not share its parent's workers
            _POOLS.clear()
            _OWNER = os.getpid()
        pool = _POOLS.get(key)
        if pool is None or pool._closed:
            pool = WorkerPool(key[0], memory_limit_mb=memory_limit_mb)
            _POOLS[key] = pool
        return pool


def shutdown_pools() -> None:
    """Stop every warm grading pool of this process."""
    with _POOLS_LOCK:
        pools = list(_POOLS.values()) if os.getpid() == _OWNER else []
        _POOLS.clear()
    for pool in pools:
        pool.close()


atexit.register(shutdown_pools)
