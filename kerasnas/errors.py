"""The errors kerasnas raises on purpose, and how their messages name settings.

Every such error derives from :class:`KerasNASError`: one line a user can act on. A message
names the settings it is about as placeholders, ``{name}`` for a dotted path of the
settings the caller gave (``{config.epochs}``, ``{relaxation}``). In Python the placeholder
reads as the path (``config.epochs``); a command line renders it as its flag
(``--epochs``), see :meth:`KerasNASError.render`. So library code speaks in settings and only
the commands know flags.

- :class:`SettingError` (also a ``ValueError``): a setting, a file or the data is wrong;
  nothing was written. Its subclasses say which part of the library found it.
- :class:`RunError` (also a ``RuntimeError``): the run started but could not finish.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator

__all__ = ["KerasNASError", "RunError", "SettingError", "within"]

_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)*)\}")


class KerasNASError(Exception):
    """Base of every error kerasnas raises on purpose (see the module doc).

    Args:
      message: the message, with settings as ``{dotted.path}`` placeholders (in an f-string,
        write ``{{path}}``).
    """

    exit_code = 2  # a command's exit code for this error (2: bad input)

    def __init__(self, message: str):
        self.template = str(message)
        super().__init__(self.render())

    def render(self, name: Callable[[str], str] = str) -> str:
        """The message with each placeholder replaced by ``name(path)`` (default: the path)."""
        return _PLACEHOLDER.sub(lambda m: name(m.group(1)), self.template)

    def settings(self) -> list[str]:
        """The setting paths the message names, in order."""
        return _PLACEHOLDER.findall(self.template)

    def within(self, prefix: str) -> KerasNASError:
        """This error with every setting path prefixed by ``prefix.``; same class, same
        other attributes (for settings nested in a larger settings object)."""
        if prefix:
            self.template = _PLACEHOLDER.sub(
                lambda m: "{" + f"{prefix}.{m.group(1)}" + "}", self.template
            )
            self.args = (self.render(),)
        return self


class SettingError(KerasNASError, ValueError):
    """A setting, an input file or the data cannot be used; nothing was written."""


class RunError(KerasNASError, RuntimeError):
    """A run started but could not finish (e.g. every trial failed)."""


@contextlib.contextmanager
def within(prefix: str) -> Iterator[None]:
    """Re-raises a :class:`KerasNASError` raised inside with its settings under `prefix`
    (see :meth:`KerasNASError.within`); other exceptions pass unchanged."""
    try:
        yield
    except KerasNASError as e:
        raise e.within(prefix) from None
