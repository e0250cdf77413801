"""Settings declared once: a dataclass field made with :func:`option` carries its help text,
its allowed values and bounds. :func:`validate` checks every such field of a settings object
(the one place those rules live); the command lines make their flags from the same
declarations (name, type, default, help, choices, bounds), so a flag's default is always
its setting's default.

    @dataclasses.dataclass
    class MyConfig:
        epochs: int = option(30, "Training epochs.", at_least=1)
        relaxation: str = option("gumbel", "How ops mix.", choices=("gumbel", "softmax"))
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence
from typing import Any

from kerasnas.errors import SettingError

__all__ = ["REQUIRED", "Option", "option", "options", "validate"]

REQUIRED: Any = dataclasses.MISSING  # option(REQUIRED, ...): a field without a default


@dataclasses.dataclass(frozen=True)
class Option:
    """What :func:`option` records about a field (see there)."""

    help: str
    flag: str | bool | None = None
    choices: tuple | None = None
    at_least: float | None = None
    above: float | None = None
    below: float | None = None


def option(
    default: Any,
    help: str,  # noqa: A002 (the word users read in --help)
    *,
    flag: str | bool | None = None,
    choices: Sequence | None = None,
    at_least: float | None = None,
    above: float | None = None,
    below: float | None = None,
    factory: Any = None,
) -> Any:
    """A dataclass field with its rules and help.

    Args:
      default: the default value; :data:`REQUIRED` for none (or pass `factory` for a
        mutable default).
      help: one line for ``--help`` and docs.
      flag: the flag's name when it is not the field's name; False: no flag (a setting
        for Python only, still validated).
      choices: the allowed values (a list field: allowed items).
      at_least, above, below: bounds of a number (>=, >, <).
    """
    meta = Option(
        help,
        flag,
        None if choices is None else tuple(choices),
        at_least,
        above,
        below,
    )
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata={"option": meta})
    return dataclasses.field(default=default, metadata={"option": meta})  # MISSING: required


def options(cls_or_obj: Any) -> Iterator[tuple[dataclasses.Field, Option]]:
    """The (field, Option) pairs of a settings dataclass, in field order."""
    for f in dataclasses.fields(cls_or_obj):
        meta = f.metadata.get("option")
        if meta is not None:
            yield f, meta


def base_type(f: dataclasses.Field) -> str:
    """The field's type without ``| None``: ``int``, ``float``, ``bool``, ``str``, ``tuple``
    (a sequence of str) or ``other``."""
    text = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    parts = [p.strip() for p in text.split("|") if p.strip() != "None"]
    head = parts[0].split("[", 1)[0] if len(parts) == 1 else "other"
    return head if head in ("int", "float", "bool", "str", "tuple") else "other"


def nullable(f: dataclasses.Field) -> bool:
    text = f.type if isinstance(f.type, str) else str(f.type)
    return "None" in text


def _check(f: dataclasses.Field, meta: Option, value: Any) -> str | None:
    """Why `value` does not fit field `f`, or None."""
    if value is None:
        return None if nullable(f) else "must be given"
    kind = base_type(f)
    if kind == "int" and (isinstance(value, bool) or not isinstance(value, int)):
        return f"must be an int, got {value!r}"
    if kind == "float" and (
        isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value)
    ):
        return f"must be a number, got {value!r}"
    if kind == "float" and math.isinf(value):
        return f"must be a finite number, got {value!r}"
    if kind == "bool" and not isinstance(value, bool):
        return f"must be True or False, got {value!r}"
    if kind == "str" and not isinstance(value, str):
        return f"must be a str, got {value!r}"
    if meta.choices is not None:
        items = list(value) if kind == "tuple" else [value]
        bad = [v for v in items if v not in meta.choices]
        if bad:
            shown = ", ".join(str(c) for c in meta.choices)
            return f"must be {'some' if kind == 'tuple' else 'one'} of {shown}, got {bad[0]!r}"
    if kind in ("int", "float"):
        if meta.at_least is not None and value < meta.at_least:
            return f"must be >= {meta.at_least:g}, got {value!r}"
        if meta.above is not None and not value > meta.above:
            return f"must be > {meta.above:g}, got {value!r}"
        if meta.below is not None and not value < meta.below:
            return f"must be < {meta.below:g}, got {value!r}"
    return None


def validate(obj: Any) -> None:
    """Checks every :func:`option` field of the dataclass `obj`; raises :class:`SettingError`
    naming the first bad one (as ``{field}``)."""
    for f, meta in options(obj):
        problem = _check(f, meta, getattr(obj, f.name))
        if problem:
            raise SettingError(f"{{{f.name}}} {problem}")
