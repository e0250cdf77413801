"""The skeleton every job shares: settings checked, seeds, determinism, data, the output
directory, the run, result files written atomically, the export, ``metrics.json`` last.

A job is a :class:`Job` subclass with a :class:`JobSettings` subclass. :meth:`Job.run`
calls ``settings.validate()``, then :meth:`Job.steps`: :meth:`Job.seed_everything`;
:meth:`Job.load_data`; :meth:`Job.prepare` (build what the run needs; every refusal of bad
input happens up to here, before anything is written); :meth:`Job.open_output_dir`;
:meth:`Job.execute` (the training or search; returns the metrics and the result model);
:meth:`Job.finish` (export, then ``metrics.json``). A job overrides the steps it needs.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, ClassVar

from kerasnas import io, options
from kerasnas.errors import RunError, SettingError, within
from kerasnas.options import REQUIRED, option

__all__ = ["ExportFailed", "Job", "JobSettings", "quiet"]

DATASET_HELP = (
    "digits (bundled), tfds:<name> (e.g. tfds:cifar10, must be prepared locally) or "
    "npz:<path> (arrays x, y)."
)


def quiet(*args: Any, **kwargs: Any) -> None:
    """A ``print`` that prints nothing (``verbose=0``)."""


@dataclasses.dataclass(kw_only=True)
class JobSettings:
    """What every job has: where its results go, its data, resume, output verbosity."""

    output_dir: str = option(REQUIRED, "Directory of the results. Required.")
    dataset: str = option("digits", DATASET_HELP)
    valid_fraction: float = option(
        0.2, "Fraction of the data held out for validation.", above=0, below=1
    )
    test_fraction: float = option(
        0.2, "Fraction held out for test (when the dataset has no test split).", above=0, below=1
    )
    resume: bool = option(False, "Continue the run in {output_dir} from where it stopped.")
    overwrite: bool = option(False, "Delete what {output_dir} holds and start afresh.")
    verbose: int = option(
        1,
        "0: quiet; 1: progress (a live line on a terminal, else one line per epoch or trial) "
        "and a summary at the end; 2: one plain line per epoch, also on a terminal.",
    )
    intra_op_threads: int = option(
        1,
        "Threads per TensorFlow op (0: TensorFlow's default, one per core). 1 is fastest for "
        "a supernet's many small ops on a few cores (kerasnas.threads).",
        at_least=0,
    )
    inter_op_threads: int = option(
        0, "TensorFlow ops run at once (0: TensorFlow's default, one per core).", at_least=0
    )
    deterministic: bool = True  # TensorFlow's op determinism (same seed, same result)
    kind: ClassVar[str | None] = None  # a search's strategy kind (kerasnas.strategies)
    nested: ClassVar[tuple[str, ...]] = ()  # fields holding settings validated under their name
    seed_of: ClassVar[str | None] = None  # the field whose ``seed`` is the run's seed

    @property
    def seed(self) -> int:
        """The seed of the data split, initialisation and sampling."""
        if self.seed_of is None:
            raise NotImplementedError(f"{type(self).__name__} has no single seed")
        return getattr(self, self.seed_of).seed

    def validate(self) -> None:
        """Raises SettingError naming the first setting that is wrong: for a search, the
        strategy and its settings (``config``); the rules of the fields' declarations; the
        ``nested`` settings (subclasses add their own rules)."""
        if self.kind is not None:
            self.check_strategy()
        options.validate(self)
        for name in self.nested:
            with within(name):
                getattr(self, name).validate()

    def check_strategy(self):
        """The registry entry of ``self.strategy`` (of the settings' `kind`), after checking
        that ``self.config`` is an instance of its settings class and validating it."""
        from kerasnas import strategies

        entry = strategies.get(self.strategy, self.kind)
        expected = entry.settings_class()
        if type(self.config) is not expected:
            raise SettingError(
                f"{{strategy}}={self.strategy} needs a {{config}} of class {expected.__name__}, "
                f"got {type(self.config).__name__}"
            )
        with within("config"):
            self.config.validate()
        return entry

    def to_json(self) -> dict[str, Any]:
        """The settings as JSON values (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


class Job:
    """One run from settings to an output directory (see the module doc).

    Class attributes: ``settings_file``, a file in the output directory that keeps the
    settings, so that a resumed run refuses settings other than ``resumable`` ones that
    changed (None: the job's checkpoints do that check); ``legacy``, settings added later
    with the value a saved file that lacks them stands for.
    """

    settings_file: str | None = None
    resumable: frozenset[str] = frozenset(
        {"output_dir", "resume", "overwrite", "verbose", "intra_op_threads", "inter_op_threads"}
    )
    # settings added after output directories may have been started: the value those had
    legacy: ClassVar[dict[str, Any]] = {}

    def __init__(self, settings: JobSettings):
        self.settings = settings
        self.log = print if settings.verbose else quiet
        self.bundle = None
        self._locked: str | None = None  # the output directory this job has locked

    def __enter__(self) -> Job:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Releases the output directory's lock (taken by :meth:`open_output_dir`; the
        ``run_*`` entry points use the job as a context manager, so this happens however
        the run ends; without it, the lock lasts until the process ends)."""
        if self._locked is not None:
            io.release_output_dir(self._locked)
            self._locked = None

    def run(self) -> dict[str, Any]:
        """Validates the settings and runs every step; returns the metrics (what
        ``metrics.json`` holds)."""
        self.settings.validate()
        return self.steps()

    def steps(self) -> dict[str, Any]:
        """The steps after validation (see the module doc)."""
        self.seed_everything()
        self.bundle = self.load_data()
        self.prepare()
        self.open_output_dir()
        metrics, model, source = self.execute()
        return self.finish(metrics, model, source)

    # -- the steps -----------------------------------------------------------------------------
    def seed_everything(self) -> None:
        """Sets TensorFlow's thread pools (:mod:`kerasnas.threads`), seeds Python, numpy and
        TensorFlow; turns on op determinism when asked."""
        import keras
        import tensorflow as tf

        from kerasnas import threads

        _, line = threads.configure(self.settings.intra_op_threads, self.settings.inter_op_threads)
        self.log(line)

        keras.utils.set_random_seed(self.settings.seed)
        if self.settings.deterministic:
            tf.config.experimental.enable_op_determinism()

    def load_data(self):
        """The :class:`~kerasnas.data.DataBundle` of the settings, with a line about it."""
        from kerasnas import data as data_lib

        s = self.settings
        bundle = data_lib.load(
            s.dataset, seed=s.seed, valid_fraction=s.valid_fraction, test_fraction=s.test_fraction
        )
        self.log(
            f"data {bundle.name}: {bundle.num_train} train / {bundle.num_valid} valid / "
            f"{bundle.num_test} test images of {bundle.input_shape}, {bundle.num_classes} classes"
        )
        return bundle

    def prepare(self) -> None:
        """Builds what the run needs; refuses bad input (nothing is written yet)."""

    def open_output_dir(self) -> None:
        """Makes the output directory ready and locks it (refusing a used one unless
        resuming or overwriting, and one another process holds; see
        :func:`kerasnas.io.prepare_output_dir`) and, with a ``settings_file``, checks a
        resumed run's settings."""
        s = self.settings
        io.prepare_output_dir(s.output_dir, resume=s.resume, overwrite=s.overwrite)
        self._locked = s.output_dir
        if self.settings_file is None:
            return
        path = os.path.join(s.output_dir, self.settings_file)
        now = s.to_json()
        if s.resume and os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                saved = _flat(json.load(f))
            flat = _flat(now)
            changed = [
                k
                for k in flat
                if k not in self.resumable and saved.get(k, self.legacy.get(k)) != flat[k]
            ]
            if changed:
                detail = ", ".join(f"{{{k}}}: {saved.get(k)!r} -> {flat[k]!r}" for k in changed)
                raise SettingError(
                    f"{{resume}}: {s.output_dir!r} was started with other settings ({detail}); "
                    "give the same settings, or {overwrite} to start afresh"
                )
        io.write_json(path, now)

    def execute(self) -> tuple[dict[str, Any], Any, str]:
        """Runs the training or search and writes its result files. Returns the metrics,
        the result model (None: nothing to export) and its file name in the output
        directory."""
        raise NotImplementedError

    def finish(self, metrics: dict[str, Any], model: Any, source: str) -> dict[str, Any]:
        """Exports `model` (when the settings ask for formats), then writes ``metrics.json``
        (last: its presence means the run finished)."""
        formats = self.export_formats()
        failure = None
        if formats and model is not None:
            try:
                metrics["export"] = export_summary(
                    model,
                    os.path.join(self.settings.output_dir, "export"),
                    formats,
                    self.bundle,
                    os.path.join(self.settings.output_dir, source),
                    self.log,
                )
            except Exception as e:  # a failed export must not cost the run's results
                failure = one_line(e)
                metrics["export"] = {"error": failure}
        io.write_json(os.path.join(self.settings.output_dir, "metrics.json"), metrics)
        text = self.summary(metrics)
        if text:
            self.log("\n" + text)
        if failure is not None:
            path = os.path.join(self.settings.output_dir, source)
            raise ExportFailed(
                f"the run finished and its results and metrics.json are in "
                f"{self.settings.output_dir!r}, but the export failed: {failure}; retry the "
                f"export with kerasnas-export on {path!r} (other formats, or after a fix)"
            )
        return metrics

    def summary(self, metrics: dict[str, Any]) -> str | None:
        """The table logged at the end (see :mod:`kerasnas.summary`), from the `metrics`
        written to ``metrics.json``; None: none."""
        return None

    def export_formats(self) -> tuple[str, ...]:
        """The export formats of the settings (none for a job without ``export``)."""
        from kerasnas.export.exporter import parse_formats

        formats = getattr(self.settings, "export", ())
        return parse_formats(formats) if formats else ()


class ExportFailed(RunError):
    """The run's results are written, its export failed (exit code 3)."""

    exit_code = 3


def one_line(error: BaseException) -> str:
    """An exception as one line: its first non-empty line (at most 300 characters), with
    the exception's type when the message is empty."""
    text = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
    return text[:300] or type(error).__name__


def _flat(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings as one dict with dotted keys (``{"trial": {"epochs": 3}}`` ->
    ``{"trial.epochs": 3}``)."""
    out: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def export_summary(model, export_dir: str, formats, bundle, source: str, log) -> dict[str, Any]:
    """Exports a run's result model into `export_dir` (replacing what an interrupted run
    left), verified on `bundle`; returns the per-format summary for ``metrics.json``."""
    from kerasnas.export.exporter import export_for_dataset

    report = export_for_dataset(
        model, export_dir, formats, bundle, overwrite=True, source=source, log=log
    )
    return {
        fmt: {k: e[k] for k in ("file", "size_bytes", "accuracy", "latency_ms", "passed")}
        for fmt, e in report["formats"].items()
    }
