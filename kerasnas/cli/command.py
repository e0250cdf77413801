"""What every kerasnas command line shares: its own absl flag set, ``--help``, required
flags, and bad input reported as one line (``<prog>: error: ...``, exit code 2).

Each command keeps its flags in its own :class:`absl.flags.FlagValues` rather than absl's
global one, so the commands' modules can be imported together (tests, notebooks).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

from absl import flags, logging

EXIT_BAD_INPUT = 2


class Command:
    """A command's flags and parsing.

    Args:
      prog: the command's name, e.g. ``kerasnas-search``, used in messages.
      doc: the usage text printed above the flags by ``--help``.
      required: names of flags that must be given.
    """

    def __init__(self, prog: str, doc: str, required: Sequence[str] = ()):
        self.prog = prog
        self.doc = doc
        self.required = tuple(required)
        self.flags = flags.FlagValues()
        self.define("boolean", "help", False, "Show the flags and exit.", short_name="h")
        self.define("boolean", "helpfull", False, "Show the flags and exit.")

    def define(self, kind: str, name: str, default: Any, help_text: str, **kwargs: Any) -> None:
        """``flags.DEFINE_<kind>(name, default, help_text, **kwargs)`` on this command."""
        getattr(flags, f"DEFINE_{kind}")(name, default, help_text, flag_values=self.flags, **kwargs)

    def validator(self, name: str, checker: Callable[[Any], bool], message: str) -> None:
        flags.register_validator(name, checker, message=message, flag_values=self.flags)

    def error(self, message: str) -> int:
        """Prints one error line; returns the bad-input exit code."""
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT

    def parse(self, argv: Sequence[str]) -> int | None:
        """Parses `argv` (program name first). Returns an exit code when the command should
        stop here (help shown: 0; bad flags: 2), None when it should run."""
        logging.set_verbosity(logging.WARNING)  # TF's SavedModel writer logs at INFO
        self.flags.unparse_flags()
        try:
            rest = self.flags(list(argv))
        except flags.Error as e:
            return self.error(f"{e} (see --helpfull)")
        if self.flags.help or self.flags.helpfull:
            print(f"{self.doc.strip()}\n\n{self.flags.get_help()}")
            return 0
        if len(rest) > 1:
            return self.error(f"unexpected arguments: {' '.join(rest[1:])}")
        for name in self.required:
            if self.flags[name].value in (None, ""):
                return self.error(f"--{name} is required (see --helpfull)")
        return None
