"""TensorFlow's native log lines: the commands import TensorFlow with its start-up lines
(CUDA probes on a CPU-only machine, CPU-feature notes, absl's "before InitializeLog"
warning) removed from stderr, and its later C++ info and warning lines off.

Those lines come from C++ before absl's logging is set up, so ``TF_CPP_MIN_LOG_LEVEL`` does
not reach all of them: :func:`filtered_stderr` points file descriptor 2 at a temporary file
while TensorFlow loads and probes its devices, then writes every other line back to stderr.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator

# a native log line (absl/TF C++): severity, date, time, thread, file:line]
_NATIVE = re.compile(r"[IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [\w./-]+:\d+\] ")
_NOISE = (
    re.compile(r"WARNING: All log messages before absl::InitializeLog\(\) is called"),
    re.compile(r"To enable the following instructions: .* rebuild TensorFlow"),
    re.compile(r"oneDNN custom operations are on"),
    re.compile(r"INFO: Created TensorFlow Lite XNNPACK delegate for CPU"),  # LiteRT
    re.compile(r"fully_quantize: \d+, inference_type: "),  # the TFLite converter
)
_CUDA = re.compile(r"cuda|cuInit|GPU will not be used", re.IGNORECASE)
_quiet = False  # set by import_tensorflow in a command; a library user's stderr is untouched


def is_noise(line: str) -> bool:
    """Whether `line` is a start-up line of TensorFlow's that a user need not see: a native
    info or warning line, an error line about CUDA (a CPU-only machine), or one of the
    known notes."""
    match = _NATIVE.match(line)
    if match:
        return line[0] in "IW" or (line[0] == "E" and bool(_CUDA.search(line)))
    return any(p.match(line) for p in _NOISE)


@contextlib.contextmanager
def filtered_stderr() -> Iterator[None]:
    """Inside, everything written to file descriptor 2 (C++ and Python) goes to a temporary
    file; on exit the lines that are not :func:`is_noise` are written to stderr, in order."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode("utf-8", errors="replace")
            kept = [line for line in text.splitlines(keepends=True) if not is_noise(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """:func:`filtered_stderr` in a command that imported TensorFlow quietly (for native
    code that prints while it runs: the TFLite converter, LiteRT's delegate); elsewhere
    nothing."""
    if not _quiet:
        yield
        return
    with filtered_stderr():
        yield


def import_tensorflow(show_logs: bool = False) -> None:
    """Imports TensorFlow and lists its devices (where CUDA is probed). Unless `show_logs`,
    the start-up lines are filtered (:func:`filtered_stderr`) and TensorFlow's later C++
    info and warning lines are turned off (``TF_CPP_MIN_LOG_LEVEL=2``, if not set)."""
    if show_logs:
        import tensorflow as tf

        tf.config.list_physical_devices()
        return
    global _quiet
    _quiet = True
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with filtered_stderr():
        import tensorflow as tf

        tf.config.list_physical_devices()
