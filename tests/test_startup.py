"""The commands answer --help and bad flags before TensorFlow is imported, and keep
TensorFlow's start-up lines off stderr."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from kerasnas import native_log

COMMANDS = ("search", "train", "compare", "export")
_PROBE = textwrap.dedent(
    """
    import sys
    sys.argv = ["kerasnas-{name}", *sys.argv[1:]]
    from kerasnas.cli.{name} import main
    code = main(sys.argv)
    print("tensorflow imported" if "tensorflow" in sys.modules else "tensorflow not imported")
    sys.exit(code)
    """
)


def _run(name: str, *args: str, cwd: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    return subprocess.run(
        [sys.executable, "-c", _PROBE.format(name=name), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
    )


@pytest.mark.parametrize("name", COMMANDS)
def test_help_is_grouped_plain_and_needs_no_tensorflow(name):
    short = _run(name, "--help")
    assert short.returncode == 0, short.stderr
    assert "tensorflow not imported" in short.stdout
    assert "``" not in short.stdout and ":class:" not in short.stdout
    assert "output:" in short.stdout and "help:" in short.stdout
    assert f"kerasnas-{name} --helpfull lists all" in short.stdout
    full = _run(name, "--helpfull")
    assert full.returncode == 0 and "tensorflow not imported" in full.stdout
    flags_of = lambda text: {
        line.split()[0] for line in text.splitlines() if line.startswith("  --")
    }  # noqa: E731
    assert flags_of(short.stdout) <= flags_of(full.stdout)
    assert short.stderr == "" and full.stderr == ""


def test_search_help_is_short_and_helpfull_lists_every_flag():
    short = _run("search", "--help").stdout
    full = _run("search", "--helpfull").stdout
    assert len(short.splitlines()) < 120
    for group in ("data:", "search space:", "strategy:", "optimisation:", "output:"):
        assert group in short
    # a strategy-specific flag: only in --helpfull, with the strategies it applies to
    assert "--child_bn" not in short
    assert "--child_bn=recalibrate  (--strategy=enas,random_ws only)" in full
    assert "--darts_order=1  (--strategy=darts only)" in full


@pytest.mark.parametrize(
    "args, message",
    [
        (("--output_dir=x", "--epoch=3"), "Did you mean: epochs"),
        (("--output_dir=x", "--strategy=snass"), "--strategy"),
        (("--epochs=3",), "--output_dir is required"),
        (("--output_dir=x", "--epochs=0"), "--epochs must be >= 1"),
        (("--output_dir=x", "--strategy=enas", "--ops=sep_conv_3x3"), "needs 'none' among --ops"),
    ],
)
def test_bad_flags_are_one_line_before_tensorflow(args, message, tmp_path):
    result = _run("search", *args, cwd=str(tmp_path))
    assert result.returncode == 2
    assert "tensorflow not imported" in result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert os.listdir(tmp_path) == []


@pytest.mark.slow  # two processes import TensorFlow
def test_a_command_that_imports_tensorflow_prints_none_of_its_start_up_lines(tmp_path):
    missing = tmp_path / "missing.json"
    result = _run("train", f"--genotype={missing}", f"--output_dir={tmp_path / 'out'}")
    assert result.returncode == 2
    assert "tensorflow imported" in result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no such file" in lines[0], result.stderr
    # --verbosity=1 lets them through (this machine has no GPU: TensorFlow says so)
    loud = _run(
        "train", f"--genotype={missing}", f"--output_dir={tmp_path / 'out'}", "--verbosity=1"
    )
    assert len(loud.stderr.strip().splitlines()) > 1
    assert any(native_log.is_noise(line) for line in loud.stderr.splitlines())


def test_noise_is_told_from_other_lines():
    assert native_log.is_noise(
        "I0000 00:00:1796303436.857873   13292 cudart_stub.cc:31] Could not find cuda drivers"
    )
    assert native_log.is_noise(
        "E0000 00:00:1796303711.977085   15605 cuda_platform.cc:52] failed call to cuInit: x"
    )
    assert native_log.is_noise(
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
    )
    assert not native_log.is_noise(
        "E0000 00:00:1796303711.977085   15605 some_kernel.cc:52] a real error"
    )
    assert not native_log.is_noise("Traceback (most recent call last):")
    assert not native_log.is_noise("kerasnas-search: error: --epochs must be >= 1")


def test_filtered_stderr_keeps_other_lines_in_order():
    code = textwrap.dedent(
        """
        import os, sys
        sys.argv = ["kerasnas-test"]  # a command process: kerasnas loads without TensorFlow
        from kerasnas import native_log
        with native_log.filtered_stderr():
            os.write(2, b"first\\n")
            os.write(2, b"I0000 00:00:1796303436.857873   13292 x.cc:31] noise\\n")
            print("second", file=sys.stderr)
        print("third", file=sys.stderr)
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == ["first", "second", "third"]
