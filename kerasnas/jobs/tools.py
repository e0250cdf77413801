"""The package's own commands run as sub-processes, several at a time: what the jobs that
run many searches (``kerasnas-compare``, ``kerasnas-pareto``) share.

:func:`run_tool` runs one command (resuming a stopped run), :func:`run_parallel` runs
calls `jobs` at a time and yields their results as they finish, and :func:`stop_children`
stops the running commands when the job is interrupted, so a resumed job continues them.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from typing import Any, TypeVar

from kerasnas.errors import RunError

__all__ = ["read_json", "run_parallel", "run_tool", "stop_children"]

K = TypeVar("K", bound=Hashable)
R = TypeVar("R")

_CHILDREN: set[subprocess.Popen] = set()  # the commands running now
_CHILDREN_LOCK = threading.Lock()


def run_tool(
    module: str, argv: list[str], output_dir: str, log_path: str, threads: int | None
) -> None:
    """Runs ``python -m module argv`` (with ``--resume`` when a stopped run left
    `output_dir`), with `threads` TensorFlow threads (None: its default); its output goes to
    `log_path`. Raises RunError with the command's last error line."""
    argv = list(argv)
    if os.path.isdir(output_dir) and os.listdir(output_dir):
        argv.append("--resume")
    env = dict(os.environ)
    if threads:
        env["TF_NUM_INTRAOP_THREADS"] = env["TF_NUM_INTEROP_THREADS"] = str(threads)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", module, *argv], stdout=log, stderr=subprocess.STDOUT, env=env
        )
        with _CHILDREN_LOCK:
            _CHILDREN.add(proc)
        try:
            proc.wait()
        finally:
            with _CHILDREN_LOCK:
                _CHILDREN.discard(proc)
    if proc.returncode != 0:
        with open(log_path, encoding="utf-8", errors="replace") as f:
            lines = [line.strip() for line in f if line.strip()]
        last = next((line for line in reversed(lines) if "error" in line.lower()), None)
        raise RunError(
            f"{module} failed (exit {proc.returncode}) for {output_dir}: "
            f"{last or (lines[-1] if lines else 'no output')} (log: {log_path})"
        )


def stop_children(wait: float = 60.0) -> None:
    """Sends SIGTERM to every command still running (each keeps its last checkpoint),
    waits up to `wait` seconds, then kills what is left."""
    with _CHILDREN_LOCK:
        procs = list(_CHILDREN)
    for proc in procs:
        proc.terminate()
    deadline = time.monotonic() + wait
    for proc in procs:
        try:
            proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            proc.kill()


def completed(futures) -> Iterator[concurrent.futures.Future]:
    """``as_completed(futures)``; when the wait is interrupted (Ctrl-C, SIGTERM), the calls
    not started are cancelled and the running commands stopped (:func:`stop_children`)
    before the interruption goes on."""
    try:
        yield from concurrent.futures.as_completed(futures)
    except BaseException:
        for f in futures:
            f.cancel()
        stop_children()
        raise


def run_parallel(calls: dict[K, Callable[[], R]], jobs: int) -> Iterator[tuple[K, R]]:
    """Runs every call, `jobs` at a time (threads that each wait on a command), and yields
    ``(key, result)`` in the order they finish. A call that raises RunError cancels the calls
    not started yet, and the error goes on."""
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        futures = {pool.submit(call): key for key, call in calls.items()}
        for future in completed(futures):
            try:
                result = future.result()
            except RunError:
                for f in futures:
                    f.cancel()
                raise
            yield futures[future], result


def read_json(path: str) -> Any:
    """The JSON document in `path`."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)
