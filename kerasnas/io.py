"""Atomic file output: a crash never leaves a half-written result file."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
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
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    """Writes `text` to `path` atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Writes `obj` as indented JSON to `path` atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


class OutputDirError(SettingError):
    """An output directory cannot be used: the message names ``{output_dir}``."""


def prepare_output_dir(path: str, *, resume: bool = False, overwrite: bool = False) -> None:
    """Makes `path` ready for a run: refuses a non-empty directory unless the run resumes
    in it (`resume`) or replaces it (`overwrite`, which empties it). Raises OutputDirError."""
    if not path:
        raise OutputDirError("{output_dir} is required")
    if os.path.exists(path) and not os.path.isdir(path):
        raise OutputDirError(f"{{output_dir}} {path!r} exists and is not a directory")
    existing = os.listdir(path) if os.path.isdir(path) else []
    if existing and not (resume or overwrite):
        raise OutputDirError(
            f"{{output_dir}} {path!r} is not empty; pass {{resume}} to continue the run in it, "
            "{overwrite} to replace it, or choose another directory"
        )
    if overwrite and not resume:
        for name in existing:
            item = os.path.join(path, name)
            shutil.rmtree(item) if os.path.isdir(item) else os.remove(item)
    os.makedirs(path, exist_ok=True)
