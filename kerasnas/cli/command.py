"""What every kerasnas command line shares: its own absl flag set made from settings
classes, ``--help``, required flags, and bad input reported as one line
(``<prog>: error: ...``, exit code 2).

A command's flags come from the :func:`~kerasnas.options.option` fields of the settings it
builds (:meth:`Command.add_settings`): name, type, default, help and allowed values are
read from there, so a flag's default is its setting's default. Each flag knows the setting
path it sets in each *context* (for ``kerasnas-search`` a context is a strategy; commands
with one kind of settings use one). After parsing, :meth:`Command.apply` writes the flags
given into a settings object, and :meth:`Command.message` renders a library error, whose
settings are ``{path}`` placeholders, with flag names.

Each command keeps its flags in its own :class:`absl.flags.FlagValues` rather than absl's
global one, so the commands' modules can be imported together (tests, notebooks).
"""

from __future__ import annotations

import copy
import dataclasses
import errno
import json
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from absl import flags, logging

from kerasnas import native_log, options
from kerasnas.errors import KerasNASError

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1  # the run failed (a filesystem error, say)
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)
EXIT_TERMINATED = 143  # SIGTERM (128 + SIGTERM)


class Terminated(BaseException):
    """Raised in the main thread when the process gets SIGTERM (see Command.main)."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated


def _catch_sigterm():
    """Turns SIGTERM into :class:`Terminated` (main thread only); returns the previous
    handler, or None when it could not be installed."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _raise_terminated)


DEFAULT = "default"  # the context of a command with one kind of settings

_KINDS = {"int": "integer", "float": "float", "bool": "boolean", "str": "string", "tuple": "list"}


@dataclasses.dataclass
class FlagSpec:
    """One flag: its absl kind, default and help, and the setting path it sets per context
    (a context without a path: the flag does not apply there)."""

    name: str
    kind: str
    default: Any
    help: str
    paths: dict[str, str] = dataclasses.field(default_factory=dict)
    enum: tuple | None = None
    mixed_default: bool = False  # contexts disagree on the default: the flag shows None


def plain(text: str) -> str:
    """`text` without reST markup: ````code```` and ``:role:`target``` as plain words."""
    text = re.sub(r":[\w:]+:`~([^`]+)`", lambda m: m.group(1).rsplit(".", 1)[-1], text)
    text = re.sub(r":[\w:]+:`([^`]+)`", r"\1", text)
    return text.replace("``", "")


def set_path(obj: Any, path: str, value: Any) -> None:
    """Sets the dotted `path` of a settings object (dataclasses and dicts) to `value`."""
    *parents, last = path.split(".")
    for name in parents:
        obj = obj[name] if isinstance(obj, dict) else getattr(obj, name)
    if isinstance(obj, dict):
        obj[last] = value
    else:
        setattr(obj, last, value)


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
        self.specs: dict[str, FlagSpec] = {}
        self.aliases: dict[str, str] = {}  # setting name -> flag, for names no spec maps
        self._defined = False
        self.groups: dict[str, tuple[str, ...]] = {}  # purpose -> flags, in --help's order
        self.brief: tuple[str, ...] = ()  # the flags --help shows (empty: all)
        # the contexts a flag applies to, in words (for --help)
        self.describe_contexts: Callable[[set[str]], str] = lambda c: ", ".join(sorted(c))
        self.more_contexts: dict[str, set[str]] = {}  # flag -> contexts it is read in too
        self.define("boolean", "help", False, "Show the main flags and exit.", short_name="h")
        self.define("boolean", "helpfull", False, "Show every flag and exit.")
        self.define(
            "integer",
            "verbosity",
            0,
            "0: kerasnas's own output; 1: also TensorFlow's log lines (start-up, converter).",
        )

    # -- flags -----------------------------------------------------------------------------------
    def define(self, kind: str, name: str, default: Any, help_text: str, **kwargs: Any) -> None:
        """``flags.DEFINE_<kind>(name, default, help_text, **kwargs)`` on this command (a
        flag the command handles itself)."""
        if kind == "enum":  # absl: DEFINE_enum(name, default, enum_values, help)
            values = kwargs.pop("enum_values")
            flags.DEFINE_enum(name, default, values, help_text, flag_values=self.flags, **kwargs)
            return
        getattr(flags, f"DEFINE_{kind}")(name, default, help_text, flag_values=self.flags, **kwargs)

    def add_settings(
        self,
        settings: Any,
        contexts: Iterable[str] = (DEFAULT,),
        prefix: str = "",
        rename: dict[str, str] | None = None,
        hide: Iterable[str] = (),
        help: dict[str, str] | None = None,  # noqa: A002
    ) -> None:
        """Flags for the option fields of the dataclass instance `settings` (their values
        are the defaults), setting ``prefix + field`` in each of `contexts`. `rename`,
        `hide` and `help` take field names: another flag name, no flag, another help."""
        rename, hide, help = rename or {}, set(hide), help or {}
        for f, meta in options.options(settings):
            if meta.flag is False or f.name in hide:
                continue
            name = rename.get(f.name) or meta.flag or f.name
            kind = _KINDS.get(options.base_type(f), "string")
            enum = meta.choices if kind == "string" and meta.choices else None
            default = getattr(settings, f.name)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                default = None  # a required setting: a flag without default
            if isinstance(default, tuple):
                default = list(default)
            spec = self.specs.get(name)
            if spec is None:
                spec = self.specs[name] = FlagSpec(
                    name, "enum" if enum else kind, default, help.get(f.name, meta.help), {}, enum
                )
            elif spec.default != default:
                spec.mixed_default = True
            for context in contexts:
                spec.paths[context] = prefix + f.name

    def finalize(self) -> None:
        """Defines the absl flags of every spec (once, after the last :meth:`add_settings`)."""
        if self._defined:
            return
        self._defined = True
        for spec in self.specs.values():
            text = self.render_help(spec.help)
            default = None if spec.mixed_default else spec.default
            if spec.mixed_default and "default" not in text.lower():
                text += " Default: the strategy's own."
            if spec.enum:
                values = [str(v) for v in spec.enum]
                self.define("enum", spec.name, default, text, enum_values=values)
            else:
                self.define(spec.kind, spec.name, default, text)

    def render_help(self, text: str) -> str:
        """`text` with ``{setting}`` placeholders shown as this command's flags."""
        return KerasNASError(text).render(lambda path: f"--{self.flag_for(path) or path}")

    def present(self, name: str) -> bool:
        return self.flags[name].present

    def applies(self, name: str, context: str = DEFAULT) -> bool:
        """Whether flag `name` sets a setting in `context`."""
        spec = self.specs.get(name)
        return spec is not None and context in spec.paths

    def apply(self, settings: Any, context: str = DEFAULT) -> Any:
        """A copy of `settings` with every flag given (and applying in `context`) written
        into its setting."""
        out = copy.deepcopy(settings)
        for spec in self.specs.values():
            path = spec.paths.get(context)
            if path is None or not self.present(spec.name):
                continue
            value = self.flags[spec.name].value
            if spec.kind == "list":
                value = tuple(value)
            set_path(out, path, value)
        return out

    # -- help ----------------------------------------------------------------------------------
    def help_text(self, full: bool = False) -> str:
        """``--help``: the usage and the main flags (:attr:`brief`) by purpose; with `full`
        (``--helpfull``) every flag, by purpose, then the flags of some contexts only (e.g.
        one strategy) under those contexts. Plain text."""
        names = [n for n in self.flags if n == self.flags[n].name]  # no short names
        shown = [n for n in names if full or not self.brief or n in self.brief]
        grouped: dict[str, list[str]] = {}
        placed = set()
        for group, members in self.groups.items():
            for name in members:
                if name in shown and name not in placed:
                    grouped.setdefault(group, []).append(name)
                    placed.add(name)
        for name in sorted(n for n in shown if n not in placed):
            grouped.setdefault(self._context_group(name), []).append(name)
        lines = [plain(self.doc.strip()), ""]
        for group, members in grouped.items():
            lines.append(f"{group}:")
            for name in members:
                lines.extend(self._flag_lines(name))
            lines.append("")
        if not full:
            lines.append(f"{self.prog} --helpfull lists all {len(names)} flags.")
        return "\n".join(lines).rstrip() + "\n"

    def _contexts(self, name: str) -> str | None:
        """The contexts flag `name` applies to, in words; None when it applies to all."""
        spec = self.specs.get(name)
        contexts = {c for s in self.specs.values() for c in s.paths}
        if spec is None or DEFAULT in spec.paths:
            return None
        mine = set(spec.paths) | self.more_contexts.get(name, set())
        return None if mine == contexts else self.describe_contexts(mine)

    def _context_group(self, name: str) -> str:
        where = self._contexts(name)
        return f"for {where}" if where else "other"

    def _flag_lines(self, name: str) -> list[str]:
        flag = self.flags[name]
        default = flag.default
        if isinstance(default, list):
            default = ",".join(str(v) for v in default)
        if flag.flag_type() == "bool":
            head = f"  --[no]{name}"
        else:
            head = f"  --{name}" + ("" if default in (None, "") else f"={default}")
        where = self._contexts(name)
        if where:
            head += f"  ({where})"
        text = plain(flag.help)
        width, indent = 100, " " * 6
        words, out, line = text.split(), [head], indent
        for word in words:
            if len(line) + len(word) + 1 > width and line.strip():
                out.append(line.rstrip())
                line = indent
            line += word + " "
        if line.strip():
            out.append(line.rstrip())
        return out

    # -- errors ----------------------------------------------------------------------------------
    def flag_for(self, path: str, context: str = DEFAULT) -> str | None:
        """The flag that sets `path` in `context`: the exact path, else the one flag whose
        path ends with ``.path``, else an alias; None if no flag does."""
        paths = {s.paths[context]: s.name for s in self.specs.values() if context in s.paths}
        if path in paths:
            return paths[path]
        ends = {name for p, name in paths.items() if p.endswith("." + path)}
        if len(ends) == 1:
            return ends.pop()
        if path in self.aliases:
            return self.aliases[path]
        return path if path in self.specs or path in self.flags else None

    def message(self, error: KerasNASError, context: str = DEFAULT) -> str:
        """`error` rendered for this command: its settings as flags where a flag sets them."""

        def name(path: str) -> str:
            flag = self.flag_for(path, context)
            return f"--{flag}" if flag else path

        return error.render(name)

    def error(self, message: str) -> int:
        """Prints one error line; returns the bad-input exit code."""
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT

    # -- running ---------------------------------------------------------------------------------
    def parse(self, argv: Sequence[str]) -> int | None:
        """Parses `argv` (program name first). Returns an exit code when the command should
        stop here (help shown: 0; bad flags: 2), None when it should run."""
        self.finalize()
        logging.set_verbosity(logging.WARNING)  # TF's SavedModel writer logs at INFO
        self.flags.unparse_flags()
        try:
            rest = self.flags(list(argv))
        except flags.Error as e:
            return self.error(f"{e} (see --helpfull)")
        if self.flags.help or self.flags.helpfull:
            print(self.help_text(full=self.flags.helpfull))
            return 0
        if len(rest) > 1:
            return self.error(f"unexpected arguments: {' '.join(rest[1:])}")
        for name in self.required:
            if self.flags[name].value in (None, ""):
                return self.error(f"--{name} is required (see --helpfull)")
        return None

    def main(
        self,
        argv: Sequence[str],
        run: Callable[[], int | None],
        context: Callable[[], str] = lambda: DEFAULT,
        check: Callable[[], int | None] | None = None,
    ) -> int:
        """Parses `argv`, calls `check()` (TensorFlow-free checks of the flags' values; an
        int it returns is an exit code), imports TensorFlow (its start-up lines filtered, see
        :mod:`kerasnas.native_log`), then calls `run()` (its return value, if an int, is the
        exit code). A :class:`KerasNASError` becomes one error line, its settings rendered
        as the flags of ``context()``, and its exit code. Returns the exit code."""
        code = self.parse(argv)
        if code is not None:
            return code
        previous = _catch_sigterm()
        try:
            code = check() if check is not None else None
            if isinstance(code, int):
                return code
            native_log.import_tensorflow(show_logs=self.flags.verbosity > 0)
            code = run()
        except KerasNASError as e:
            print(f"{self.prog}: error: {self.message(e, context())}", file=sys.stderr)
            return e.exit_code
        except (KeyboardInterrupt, Terminated) as e:
            how = "interrupted" if isinstance(e, KeyboardInterrupt) else "terminated (SIGTERM)"
            print(f"{self.prog}: stopped: {how}; {self._resume_hint()}", file=sys.stderr)
            return EXIT_INTERRUPTED if isinstance(e, KeyboardInterrupt) else EXIT_TERMINATED
        except OSError as e:  # the filesystem: read-only, full, not a directory...
            reason = e.strerror or (str(e).splitlines() or [type(e).__name__])[0]
            out = self.flags["output_dir"].value if "output_dir" in self.flags else None
            where = f": {e.filename!r}" if e.filename else (f" in {out!r}" if out else "")
            hint = ""
            if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES):
                hint = f"; {self._resume_hint()}"
            print(f"{self.prog}: error: {reason}{where}{hint}", file=sys.stderr)
            return EXIT_FAILED
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        return code if isinstance(code, int) else 0

    def entry_points(
        self,
        run: Callable[[], int | None],
        context: Callable[[], str] = lambda: DEFAULT,
        check: Callable[[], int | None] | None = None,
    ) -> tuple[Callable[[Sequence[str]], int], Callable[[], None]]:
        """``(main, console_script)`` of a command: ``main(argv)`` (program name first) is
        :meth:`main` with these arguments and returns the exit code; the console script
        exits with ``main(sys.argv)``."""

        def main(argv: Sequence[str]) -> int:
            return self.main(argv, run, context, check)

        def console_script() -> None:
            sys.exit(main(sys.argv))

        main.__doc__ = f"Runs {self.prog} on `argv` (program name first); the exit code."
        console_script.__doc__ = f"The {self.prog} console script."
        return main, console_script

    def _resume_hint(self) -> str:
        """What a stopped run can do next (the output directory's checkpoint is kept)."""
        out = self.flags["output_dir"].value if "output_dir" in self.flags else None
        if not out:
            return "nothing was finished"
        if "resume" not in self.flags:
            return f"{out!r} may hold partial results"
        try:
            with open(os.path.join(out, "checkpoints", "state.json"), encoding="utf-8") as f:
                done = int(json.load(f)["epochs_done"])
        except FileNotFoundError:
            return f"no checkpoint in {out!r} yet: add --resume to start it again there"
        except (OSError, ValueError, KeyError, TypeError):
            return f"the last checkpoint in {out!r} is kept: add --resume to continue"
        return f"the checkpoint of epoch {done} in {out!r} is kept: add --resume to continue"
