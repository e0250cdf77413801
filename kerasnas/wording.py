"""Words for messages: counts with the noun in the right number."""

from __future__ import annotations

__all__ = ["count"]


def count(n: float, noun: str, plural: str | None = None, spec: str = "") -> str:
    """``n`` and `noun`, plural unless n is 1: ``count(1, "format")`` is ``"1 format"``,
    ``count(5, "format")`` is ``"5 formats"``.

    Args:
      n: the number.
      noun: its singular.
      plural: the plural when it is not `noun` + ``"s"`` (``count(2, "index", "indices")``).
      spec: a format spec for n (``","``, ``".3g"``); the noun is singular when n reads
        ``1`` in it.
    """
    text = f"{n:{spec}}"
    return f"{text} {noun if text == '1' else plural or noun + 's'}"
