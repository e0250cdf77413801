"""TensorFlow's thread pools as the jobs set them (kerasnas.threads)."""

import subprocess
import sys

import pytest

from kerasnas import threads
from kerasnas.jobs.settings import OneShotSettings


def test_the_suite_runs_with_the_jobs_pools():
    assert threads.current()[0] == 1  # tests/conftest.py sets them as a job does


@pytest.mark.parametrize("kwargs", [{"intra_op_threads": -1}, {"inter_op_threads": 1.5}])
def test_a_bad_count_is_named(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        threads.configure(**kwargs)


def test_a_job_setting_below_zero_is_refused():
    from kerasnas.errors import SettingError

    with pytest.raises(SettingError, match="intra_op_threads"):
        OneShotSettings(output_dir="x", intra_op_threads=-2).validate()


@pytest.mark.slow
def test_pools_are_set_before_the_first_op_and_fixed_after_it():
    code = (
        "from kerasnas import threads\n"
        "import tensorflow as tf\n"
        "print(threads.configure(1, 3))\n"
        "print(threads.current())\n"
        "tf.constant(1.0) + 1.0\n"
        "print(threads.configure(1, 3))\n"
        "print(threads.configure(2, 0))\n"
        "print(threads.current())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    ).stdout.splitlines()
    assert out[0] == "(True, 'threads: 1 per op; ops at once: 3')"
    assert out[1] == "(1, 3)"
    assert out[2] == out[0]  # already as asked
    assert out[3] == "(False, 'threads: 1 per op; ops at once: 3 (fixed earlier in this process)')"
    assert out[4] == "(1, 3)"
