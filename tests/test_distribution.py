"""Supernet training under tf.distribute: a mirrored step over two logical CPUs equals the
single-device step on the same global batch (SNAS, DARTS); a two-worker
MultiWorkerMirroredStrategy search on localhost; refused combinations exit with code 2."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = [
    "--epochs=1",
    "--batch_size=256",
    "--init_channels=4",
    "--layers=3",
    "--nodes=2",
    "--ops=none,max_pool_3x3,conv_1x1",
    "--export=",
    "--verbose=0",
]


def _env(**extra: str) -> dict:
    return {
        **os.environ,
        "PYTHONPATH": ROOT,
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "CUDA_VISIBLE_DEVICES": "",
        **extra,
    }


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@pytest.mark.slow
def test_mirrored_first_step_equals_single_device():
    """Weights, logits, BN moving statistics and optimizer state after one step (SNAS,
    DARTS first order) agree to 1e-5 with the single device's; a checkpoint restores
    every replica's copy."""
    proc = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "tests", "distribution_check.py"),
            "snas",
            "darts",
        ],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(result) == {"snas", "darts"}
    for kind, r in result.items():
        assert r["max_diff"] < 1e-5, (kind, r)
        assert r["loss"][0] == pytest.approx(r["loss"][1], abs=1e-6), (kind, r)
        assert r["replica_spread"] == 0.0, (kind, r)  # every replica made the same update
        # resume under mirrored: a checkpoint restores every replica's copy
        assert r["restore_diff"] == 0.0 and r["restore_spread"] == 0.0, (kind, r)


def _search(out, *flags: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "kerasnas.cli.search", f"--output_dir={out}", *TINY, *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(**env),
    )


@pytest.mark.slow
def test_two_workers_on_localhost_finish_and_only_the_chief_writes(tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        procs.append(
            _search(
                tmp_path / f"out{index}",
                "--distribution=multi_worker",
                "--strategy=snas",
                TF_CONFIG=tf_config,
            )
        )
    try:
        results = [p.communicate(timeout=240) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (_stdout, stderr) in zip(procs, results, strict=True):
        assert p.returncode == 0, stderr[-3000:]
    chief = tmp_path / "out0"
    assert (chief / "genotype.json").exists() and (chief / "metrics.json").exists()
    metrics = json.loads((chief / "metrics.json").read_text())
    assert metrics["settings"]["distribution"] == "multi_worker"
    assert not (tmp_path / "out1").exists()  # the worker wrote to a deleted temporary dir


@pytest.mark.parametrize(
    "flags, tf_config, named",
    [
        (("--distribution=multi_worker",), None, "--distribution"),
        (("--distribution=multi_worker",), "{not json", "--distribution"),
        (("--distribution=multi_worker",), '{"cluster": {}, "task": {}}', "--distribution"),
        (("--distribution=mirrored", "--jit_compile"), None, "--jit_compile"),
        (("--distribution=mirrored", "--relaxation=gumbel_hard"), None, "--relaxation"),
        (("--distribution=mirrored", "--strategy=enas"), None, "--distribution"),
        (("--distribution=multi_worker", "--resume"), None, "--resume"),
    ],
)
def test_refused_combinations_exit_2_naming_the_flag(
    tmp_path, monkeypatch, capsys, flags, tf_config, named
):
    from kerasnas.cli import search

    monkeypatch.delenv("TF_CONFIG", raising=False)
    if tf_config is not None:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    code = search.main(["kerasnas-search", f"--output_dir={tmp_path / 'out'}", *TINY, *flags])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1 and named in lines[0], err
    assert not (tmp_path / "out").exists()
