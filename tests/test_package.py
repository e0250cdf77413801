"""The package's shape: a light ``import kerasnas``, one error base, library messages that
name settings rather than flags, keras-tuner's private API in one module."""

from __future__ import annotations

import ast
import importlib
import inspect
import os
import pkgutil
import subprocess
import sys

import pytest

import kerasnas
from kerasnas.errors import KerasNASError, RunError, SettingError, within

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "kerasnas")
ENV = {**os.environ, "PYTHONPATH": ROOT}


def _modules() -> list[str]:
    return [
        m.name
        for m in pkgutil.walk_packages(kerasnas.__path__, "kerasnas.")
        if not m.name.endswith("__main__")
    ]


def _sources() -> dict[str, str]:
    out = {}
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                with open(path, encoding="utf-8") as f:
                    out[os.path.relpath(path, PACKAGE)] = f.read()
    return out


@pytest.mark.slow
def test_import_kerasnas_loads_neither_keras_tuner_nor_the_jobs_and_keeps_the_environment():
    code = (
        "import os, sys\n"
        "before = dict(os.environ)\n"
        "import kerasnas\n"
        "mods = sorted(m for m in sys.modules if m.startswith('kerasnas'))\n"
        "print('keras_tuner' in sys.modules, 'grpc' in sys.modules, dict(os.environ) == before,"
        " ','.join(mods))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    tuner, grpc, same_environment, mods = proc.stdout.split()
    assert tuner == "False" and grpc == "False" and same_environment == "True"
    loaded = set(mods.split(","))
    assert {"kerasnas.ops", "kerasnas.layers", "kerasnas.genotype", "kerasnas.derive"} <= loaded
    heavy = ("kerasnas.jobs", "kerasnas.trainers", "kerasnas.multitrial", "kerasnas.cli")
    assert not any(m.startswith(heavy) for m in loaded), loaded


def test_the_public_face_resolves_every_name():
    for name in kerasnas.__all__:
        assert getattr(kerasnas, name) is not None, name
    assert kerasnas.SNASTrainer.__module__ == "kerasnas.trainers.snas"
    assert kerasnas.data.load is not None  # a submodule, imported on first access
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        kerasnas.nope  # noqa: B018


def test_every_error_kerasnas_defines_derives_from_one_base():
    found = []
    for name in _modules():
        module = importlib.import_module(name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            # signals (Terminated, like KeyboardInterrupt) are BaseExceptions, not errors
            if issubclass(obj, Exception) and obj.__module__ == name:
                found.append(obj)
    assert len(found) >= 12  # DataError, SpaceError, ExportError, CheckpointError, ...
    assert all(issubclass(cls, KerasNASError) for cls in found), [
        c.__name__ for c in found if not issubclass(c, KerasNASError)
    ]


def test_library_messages_name_settings_not_flags():
    """Outside kerasnas/cli/, no string in a raise statement spells a flag (``--name``)."""
    offenders = []
    for path, text in _sources().items():
        if path.startswith("cli" + os.sep):
            continue
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Raise) and node.exc is not None:
                for sub in ast.walk(node.exc):
                    if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                        if any(part[:1].isalpha() for part in sub.value.split("--")[1:]):
                            offenders.append(f"{path}:{node.lineno}")
    assert not offenders, offenders


def test_keras_tuner_private_api_is_used_in_one_module_only():
    users = sorted(
        path
        for path, text in _sources().items()
        if "keras_tuner.src" in text or "_retry_queue" in text or "._oracle" in text
    )
    assert users == [os.path.join("multitrial", "distributed.py")]


def test_every_private_keras_tuner_name_resolves():
    from kerasnas.multitrial import distributed

    distributed.check_private_api()  # raises ImportError naming a moved symbol


def test_a_moved_private_symbol_fails_loudly_naming_it(monkeypatch):
    from kerasnas.multitrial import distributed

    moved = ("keras_tuner.src.distribute.oracle_client", "OracleClientThatMoved")
    monkeypatch.setattr(distributed, "PRIVATE_API", (*distributed.PRIVATE_API, moved))
    with pytest.raises(ImportError, match="oracle_client.OracleClientThatMoved"):
        distributed.check_private_api()


def test_error_messages_render_settings_as_paths_or_flags():
    error = SettingError("{config.epochs} must be >= 1; or pass {resume}")
    assert str(error) == "config.epochs must be >= 1; or pass resume"
    assert (
        error.render(lambda p: "--" + p.split(".")[-1]) == "--epochs must be >= 1; or pass --resume"
    )
    assert error.settings() == ["config.epochs", "resume"]
    with pytest.raises(SettingError) as info, within("trial"):
        raise SettingError("{epochs} must be >= 1, got {'a': 1}")
    assert str(info.value) == "trial.epochs must be >= 1, got {'a': 1}"
    assert isinstance(RunError("x"), RuntimeError) and isinstance(error, ValueError)
