"""Distributed mode for real: a chief and two workers on localhost finish a small search and
every process exits; a lone worker and a lone chief exit after their timeouts; a worker
abandons its trial when the chief dies; a dead worker's trial goes to another worker."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEARCH = [
    "--strategy=reinforce",
    "--search_space=nasrl",
    "--max_layers=2",
    "--num_filters=4,8",
    "--filter_sizes=1,3",
    "--controller_batch_size=2",
    "--trial_epochs=1",
    "--batch_size=128",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(tuner_id: str, port: int, out, *flags: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "PYTHONPATH": ROOT,
        "KERASTUNER_ORACLE_IP": "127.0.0.1",
        "KERASTUNER_ORACLE_PORT": str(port),
        "KERASTUNER_TUNER_ID": tuner_id,
        "OMP_NUM_THREADS": "1",
        "TF_NUM_INTRAOP_THREADS": "1",
        "TF_NUM_INTEROP_THREADS": "1",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "kerasnas.cli.search", f"--output_dir={out}", *SEARCH, *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _wait(procs: dict, timeout: float) -> dict:
    """Exit code, stdout and stderr of every process; kills (and fails) on timeout."""
    deadline = time.monotonic() + timeout
    results = {}
    for name, proc in procs.items():
        try:
            out, err = proc.communicate(timeout=max(deadline - time.monotonic(), 1))
        except subprocess.TimeoutExpired:
            for p in procs.values():
                p.kill()
            raise AssertionError(f"{name} did not exit within {timeout} s") from None
        results[name] = (proc.returncode, out, err)
    return results


@pytest.mark.slow
def test_chief_and_two_workers_finish_and_every_process_exits(tmp_path):
    port, out = _free_port(), tmp_path / "run"
    flags = ("--max_trials=8", "--distributed_timeout=100")
    procs = {"chief": _start("chief", port, out, *flags)}
    procs.update({t: _start(t, port, out, *flags) for t in ("tuner0", "tuner1")})
    start = time.monotonic()
    results = _wait(procs, timeout=150)
    for name, (code, stdout, stderr) in results.items():
        assert code == 0, f"{name} exited {code}:\n{stdout}\n{stderr}"
    assert time.monotonic() - start < 150

    with open(out / "history.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8 and all(r["status"] == "COMPLETED" for r in rows)
    by_worker = {t: sum(r["tuner_id"] == t for r in rows) for t in ("tuner0", "tuner1")}
    assert by_worker["tuner0"] >= 1 and by_worker["tuner1"] >= 1, by_worker
    assert sum(by_worker.values()) == 8
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["workers"] == ["tuner0", "tuner1"] and not metrics["timed_out"]
    assert (out / "best.keras").exists() and (out / "architecture.json").exists()
    # each worker printed its trials' progress lines, the chief none
    assert "trial " in results["tuner0"][1] and "trial " in results["tuner1"][1]


@pytest.mark.slow
def test_lone_worker_and_lone_chief_exit_after_their_timeouts(tmp_path):
    procs = {
        "worker": _start("tuner0", _free_port(), tmp_path / "w", "--distributed_timeout=3"),
        "chief": _start("chief", _free_port(), tmp_path / "c", "--distributed_timeout=3"),
    }
    results = _wait(procs, timeout=90)
    code, _, err = results["worker"]
    assert code == 1 and "chief" in err and "Traceback" not in err
    code, _, err = results["chief"]
    assert code == 1 and "timed out" in err and "Traceback" not in err


def _wait_for_trial(out, timeout: float = 120) -> None:
    """Until the chief has handed out its first trial (keras-tuner makes its directory)."""
    deadline = time.monotonic() + timeout
    while not list(out.rglob("trial_0")):
        assert time.monotonic() < deadline, "no trial was handed out"
        time.sleep(0.5)


@pytest.mark.slow
def test_a_worker_abandons_its_trial_when_the_chief_dies(tmp_path):
    port, out = _free_port(), tmp_path / "run"
    # a trial of 2,000 epochs takes minutes; the worker checks in after each epoch
    flags = ("--max_trials=2", "--trial_epochs=2000", "--distributed_timeout=40")
    procs = {
        "chief": _start("chief", port, out, *flags),
        "tuner0": _start("tuner0", port, out, *flags),
    }
    _wait_for_trial(out)
    time.sleep(3)  # the worker is inside its trial
    procs["chief"].kill()
    killed = time.monotonic()
    code, _, err = _wait({"tuner0": procs["tuner0"]}, timeout=120)["tuner0"]
    procs["chief"].wait()
    assert code == 1 and "Traceback" not in err, err
    assert "did not answer" in err and "its trial is abandoned" in err
    assert time.monotonic() - killed < 90  # an epoch and one call's timeout (40 s)


@pytest.mark.slow
def test_the_trial_of_a_dead_worker_is_handed_to_another(tmp_path):
    port, out = _free_port(), tmp_path / "run"
    flags = (
        "--max_trials=2",
        "--trial_epochs=3",
        "--distributed_timeout=150",
        "--worker_timeout=10",
    )
    procs = {"chief": _start("chief", port, out, *flags)}
    doomed = _start("tuner0", port, out, *flags)
    _wait_for_trial(out)
    doomed.kill()  # dies inside trial 0, which is never ended
    doomed.wait()
    procs["tuner1"] = _start("tuner1", port, out, *flags)
    results = _wait(procs, timeout=240)
    report = "\n".join(f"== {n} exited {c}:\n{o}\n{e[-3000:]}" for n, (c, o, e) in results.items())
    assert all(code == 0 for code, _, _ in results.values()), report
    assert "handed out again" in results["chief"][1]
    with open(out / "history.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and all(r["status"] == "COMPLETED" for r in rows), rows
    assert {r["tuner_id"] for r in rows} == {"tuner1"}


def test_the_chief_queues_a_silent_workers_trial_again_and_tells_others_to_wait(tmp_path):
    """The chief's bookkeeping behind the two tests above, in one process (no gRPC, fast):
    a trial whose worker has been silent for over the limit goes back to the queue and to
    the next worker that asks; a worker asking once every trial is out, while others still
    run theirs, is told to wait instead of to stop."""
    import keras_tuner

    from kerasnas.multitrial import distributed

    hp = keras_tuner.HyperParameters()
    hp.Choice("units", [4, 8, 16])
    oracle = keras_tuner.oracles.RandomSearchOracle(
        objective="loss", max_trials=2, hyperparameters=hp, seed=0
    )
    oracle._set_project_dir(str(tmp_path), "p")
    lost, kept = oracle.create_trial("tuner0"), oracle.create_trial("tuner1")
    now = time.monotonic()
    seen = {lost.trial_id: now - 11, kept.trial_id: now - 9}
    assert distributed._requeue_silent(oracle, seen, 10) == [lost.trial_id]
    assert oracle._retry_queue == [lost.trial_id] and "tuner0" not in oracle.tuner_ids
    assert list(oracle.ongoing_trials) == ["tuner1"]

    again = oracle.create_trial("tuner2")
    assert again.trial_id == lost.trial_id and again.status == "RUNNING"
    assert distributed._requeue_silent(oracle, seen | {again.trial_id: now}, 10) == []
    # both trials out and running: a fourth worker's STOPPED answer becomes "wait"
    stopped = oracle.create_trial("tuner3")
    assert stopped.status == "STOPPED"
    assert distributed._wait_instead_of_stop(oracle, stopped.to_proto())
    for trial in (kept, again):
        oracle.update_trial(trial.trial_id, {"loss": 1.0})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
    assert not distributed._wait_instead_of_stop(oracle, stopped.to_proto())
