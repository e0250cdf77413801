"""Tests for kerasnas.jobs.tools: sub-process commands run several at a time."""

from __future__ import annotations

import threading
import time

import pytest

from kerasnas.errors import RunError
from kerasnas.jobs import tools


def test_run_parallel_yields_every_result_as_it_finishes():
    def call(seconds, value):
        def run():
            time.sleep(seconds)
            return value

        return run

    calls = {"slow": call(0.3, 1), "fast": call(0.0, 2), "mid": call(0.1, 3)}
    assert list(tools.run_parallel(calls, 3)) == [("fast", 2), ("mid", 3), ("slow", 1)]
    assert dict(tools.run_parallel(calls, 1)) == {"slow": 1, "fast": 2, "mid": 3}


def test_a_failed_call_cancels_the_calls_not_started():
    started = []
    lock = threading.Lock()

    def call(key, fail=False):
        def run():
            with lock:
                started.append(key)
            if fail:
                raise RunError(f"{key} failed")
            return key

        return run

    calls = {0: call(0, fail=True), **{k: call(k) for k in range(1, 6)}}
    with pytest.raises(RunError, match="0 failed"):
        list(tools.run_parallel(calls, 1))
    assert len(started) < 6  # the queue behind the failure never ran


def test_run_tool_reports_the_last_error_line(tmp_path):
    out = tmp_path / "out"
    log = tmp_path / "logs" / "run.log"
    with pytest.raises(RunError, match=r"exit 2.*error: argument infile.*run\.log"):
        tools.run_tool("json.tool", ["/nonexistent/file.json"], str(out), str(log), 1)
    assert log.exists()
    tools.run_tool("json.tool", ["--help"], str(out), str(log), None)  # exit 0: no error
    assert "usage" in log.read_text()
