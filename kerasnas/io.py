"""Atomic file output: a crash never leaves a half-written result file."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

from kerasnas.errors import SettingError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yields a temporary path beside `path`; renames it onto `path` on success.

    The temporary file lives in the same directory, so the final `os.replace` is atomic.
    On any exception the temporary file is removed and `path` is left untouched.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    base = os.path.basename(path)
    # Keep the extension: some writers (keras, matplotlib) choose the format from it.
    suffix = "".join(os.path.splitext(base)[1:])
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=f".tmp{suffix}", dir=directory)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; results are ordinary files
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        if isinstance(e, OSError) and e.errno and not e.filename:  # e.g. ENOSPC in write()
            raise OSError(e.errno, e.strerror or os.strerror(e.errno), path) from e
        raise


def sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of the file at `path`."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_text(path: str | os.PathLike, text: str) -> None:
    """Writes `text` to `path` atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Writes `obj` as indented JSON to `path` atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


class OutputDirError(SettingError):
    """An output directory cannot be used: the message names ``{output_dir}``."""


LOCK_FILE = ".kerasnas.lock"
# what atomic_path and the exporter leave behind when killed: .<name>.<8 random>.tmp[.ext]
_TEMPORARY = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp(\..*)?|\.export\.[a-z0-9_]{8}")
_held: dict[str, tuple[int, str]] = {}  # real path -> (fd, lock file) of a lock held here


def _os_error(path: str, error: OSError) -> OutputDirError:
    reason = error.strerror or type(error).__name__
    where = error.filename or path
    return OutputDirError(f"{{output_dir}} {path!r}: cannot write {where!r}: {reason}")


def lock_output_dir(path: str) -> None:
    """Takes an exclusive lock on the directory `path` (which must exist) until
    :func:`release_output_dir` or the end of the process: ``fcntl.flock`` on its
    ``.kerasnas.lock``, which records the holder's pid, host and command. Another process
    holding it: OutputDirError naming that holder. The operating system drops the lock
    when its process ends, however it ends, so a killed run never leaves a stale lock (its
    file stays, unlocked, until the next run). Taking a lock this process holds already does
    nothing."""
    _lock(path, os.path.join(path, LOCK_FILE))


def lock_target(path: str) -> None:
    """Locks `path`, a directory that will be replaced whole (an export renamed into place),
    with the lock file ``.<name>.kerasnas.lock`` beside it, and deletes the staging
    directories ``.<name>.<random>.tmp`` killed writers left beside it. As
    :func:`lock_output_dir` otherwise; :func:`release_output_dir` releases it."""
    parent, name = os.path.split(os.path.abspath(path))
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as e:
        raise _os_error(path, e) from None
    _lock(path, os.path.join(parent, f".{name}.kerasnas.lock"))
    staging = re.compile(rf"\.{re.escape(name)}\.[a-z0-9_]{{8}}\.tmp")
    for item in os.listdir(parent):
        if staging.fullmatch(item):
            shutil.rmtree(os.path.join(parent, item), ignore_errors=True)


def _lock(path: str, lock_path: str) -> None:
    key = os.path.realpath(path)
    if key in _held:
        return
    while True:
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise _os_error(path, e) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "another run"
            os.close(fd)
            raise OutputDirError(
                f"{{output_dir}} {path!r} is in use by {holder}; wait for that run to end or "
                "choose another directory"
            ) from None
        try:  # the holder may have deleted the file as we opened it: lock the one in place
            if os.stat(lock_path).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    note = f"pid {os.getpid()} on {socket.gethostname()} ({' '.join(sys.argv)[:200]})\n"
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, note.encode(), 0)
    except OSError as e:
        os.close(fd)
        raise _os_error(path, e) from None
    _held[key] = (fd, lock_path)


def release_output_dir(path: str) -> None:
    """Releases the lock :func:`lock_output_dir` (or :func:`lock_target`) took on `path`
    and deletes the lock file (no-op if not held). A killed run leaves the file, unlocked:
    the next run takes it."""
    fd, lock_path = _held.pop(os.path.realpath(path), (None, None))
    if fd is not None:
        with contextlib.suppress(OSError):
            os.remove(lock_path)
        os.close(fd)  # closing the descriptor releases the flock


def remove_stale_temporaries(path: str) -> list[str]:
    """Deletes, anywhere under `path`, the temporary files and directories a killed run
    left (``.<name>.<random>.tmp[.ext]``, ``.export.<random>``); returns their paths. Call
    it only while holding the directory's lock."""
    removed = []
    for root, dirs, files in os.walk(path):
        for name in [*files, *dirs]:
            if _TEMPORARY.fullmatch(name):
                item = os.path.join(root, name)
                if os.path.isdir(item) and not os.path.islink(item):
                    shutil.rmtree(item, ignore_errors=True)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(item)
                removed.append(item)
        dirs[:] = [d for d in dirs if not _TEMPORARY.fullmatch(d)]
    return removed


def prepare_output_dir(path: str, *, resume: bool = False, overwrite: bool = False) -> None:
    """Makes `path` ready for a run and locks it (:func:`lock_output_dir`): refuses a
    non-empty directory unless the run resumes in it (`resume`) or replaces it
    (`overwrite`, which empties it); deletes what killed runs left half-written (see
    :func:`remove_stale_temporaries`). Raises OutputDirError, also for a path that cannot
    be created or written (naming the path and the reason)."""
    if not path:
        raise OutputDirError("{output_dir} is required")
    if resume and overwrite:
        raise OutputDirError(
            "{resume} (continue the run) and {overwrite} (delete it and start afresh) exclude "
            "each other; pass one"
        )
    if os.path.exists(path) and not os.path.isdir(path):
        raise OutputDirError(f"{{output_dir}} {path!r} exists and is not a directory")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise _os_error(path, e) from None
    lock_output_dir(path)
    try:
        remove_stale_temporaries(path)
        existing = [name for name in os.listdir(path) if name != LOCK_FILE]
        if existing and not (resume or overwrite):
            raise OutputDirError(
                f"{{output_dir}} {path!r} is not empty; pass {{resume}} to continue the run in "
                "it, {overwrite} to replace it, or choose another directory"
            )
        if overwrite:
            for name in existing:
                item = os.path.join(path, name)
                shutil.rmtree(item) if os.path.isdir(item) else os.remove(item)
    except OutputDirError:
        release_output_dir(path)
        raise
    except OSError as e:
        release_output_dir(path)
        raise _os_error(path, e) from None
