"""``python -m kerasnas.export``: the same as ``kerasnas-export``."""

from kerasnas.export.cli import run

run()
