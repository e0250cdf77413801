"""The summary every command prints when it ends: what was found, how good, how big, the
files written and the command to run next, as plain aligned text.

Each builder takes what the command wrote (``metrics.json``, ``export_report.json``,
``summary.json``) so that the table shows exactly the figures in the files:
:func:`one_shot` (``kerasnas-search``, one-shot strategies), :func:`trial_based`
(``kerasnas-search``, trial-based), :func:`retrain` (``kerasnas-train``), :func:`comparison`
(``kerasnas-compare``) and :func:`export` (``kerasnas-export``); :func:`render` lays out
the rows.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Sequence
from typing import Any

__all__ = [
    "comparison",
    "export",
    "genotype_lines",
    "one_shot",
    "render",
    "retrain",
    "trial_based",
]

Row = tuple[str, "str | Sequence[str]"]


def render(title: str, rows: Sequence[Row]) -> str:
    """`title`, then one ``label  value`` row per entry of `rows`, labels padded to one
    width; a value given as several lines continues under the first, aligned; rows with an
    empty value are left out."""
    rows = [(label, [value] if isinstance(value, str) else list(value)) for label, value in rows]
    rows = [(label, lines) for label, lines in rows if any(lines)]
    width = max((len(label) for label, _ in rows), default=0)
    out = [title]
    for label, lines in rows:
        out.append(f"  {label:<{width}}  {lines[0]}".rstrip())
        out.extend(f"  {'':<{width}}  {line}".rstrip() for line in lines[1:])
    return "\n".join(out)


def _short_op(name: str) -> str:
    """``sep_conv_3x3`` -> ``sep3x3``, ``max_pool_3x3`` -> ``max3x3``, ``skip_connect`` ->
    ``skip``."""
    return name.replace("_conv_", "").replace("_pool_", "").replace("skip_connect", "skip")


def genotype_lines(genotype: dict[str, Any]) -> list[str]:
    """A genotype's cells (its ``to_dict()`` form), one line each: the intermediate nodes
    in order, separated by ``|``, each the sum of ``op(input)`` of its edges (ops
    shortened: ``sep3x3`` is ``sep_conv_3x3``; ``-``: a node without edges)."""
    lines = []
    for kind in ("normal", "reduce"):
        if kind not in genotype:
            continue
        nodes = [
            "+".join(f"{_short_op(op)}({i})" for op, i in node) or "-" for node in genotype[kind]
        ]
        lines.append(f"{kind}: {' | '.join(nodes)}")
    return lines


def _acc(value: Any) -> str:
    return "?" if value is None else f"{value:.4f}"


def _count(value: Any) -> str:
    return "?" if value is None else f"{int(value):,}"


def _size(metrics: dict[str, Any], prefix: str = "") -> str:
    parts = [f"{_count(metrics.get(prefix + 'params'))} params"]
    if metrics.get(prefix + "flops") is not None:
        parts.append(f"{_count(metrics[prefix + 'flops'])} mult-adds per image")
    return ", ".join(parts)


def _format_figures(entry: dict[str, Any]) -> list[str]:
    """One exported format's file size, test accuracy and latency, as far as measured."""
    parts = [f"{entry['size_bytes']:,} bytes"]
    if entry.get("accuracy") is not None:
        parts.append(f"test accuracy {entry['accuracy']:.4f}")
    if entry.get("latency_ms") is not None:
        parts.append(f"{entry['latency_ms']:.3f} ms/image")
    return parts


def _latency(export: dict[str, Any] | None) -> list[str]:
    """Per exported format: file size, accuracy and latency (``metrics.json``'s export)."""
    if not export:
        return []
    if "error" in export:
        return [f"export failed: {export['error']}"]
    return [f"{fmt}: {', '.join(_format_figures(e))}" for fmt, e in export.items()]


def _files(output_dir: str, entries: Sequence[tuple[str, str]]) -> list[str]:
    """The entries (name, what) that exist in `output_dir`, as aligned lines."""
    present = [(n, w) for n, w in entries if os.path.exists(os.path.join(output_dir, n))]
    width = max((len(os.path.join(output_dir, n)) for n, _ in present), default=0)
    return [f"{os.path.join(output_dir, n):<{width}}  {w}" for n, w in present]


def _q(path: str) -> str:
    return shlex.quote(path)


def _sibling(output_dir: str, name: str) -> str:
    """A directory beside `output_dir` (``run`` -> ``retrain``, ``/x/run`` -> ``/x/retrain``)."""
    return os.path.join(os.path.dirname(os.path.normpath(output_dir)), name)


def _seconds(metrics: dict[str, Any], key: str) -> str:
    """The run's seconds in the training loop (`key`), split into the steps (what a time
    budget counts), compiling (start-up) and the rest (validation, checkpoints)."""
    total = metrics.get(key)
    if total is None:
        return ""
    steps, setup = metrics.get("budget_seconds"), metrics.get("setup_seconds")
    if steps is None or setup is None:
        return f"{total:.0f} s in the training loop"
    rest = max(total - steps - setup, 0.0)
    return (
        f"{total:.0f} s in the training loop: {steps:.0f} s of training steps, {setup:.0f} s "
        f"compiling (once per run), {rest:.0f} s validation and checkpoints"
    )


def one_shot(
    metrics: dict[str, Any], genotype: dict[str, Any], output_dir: str, passes: int = 1
) -> str:
    """The summary of a one-shot search (`metrics`: its ``metrics.json``; `genotype`: its
    ``genotype.json``; `passes`: of the supernet, averaged in its accuracies)."""
    out = output_dir
    epochs = f"{metrics.get('epochs_done', metrics.get('epochs'))} epochs"
    if metrics.get("steps") is not None:
        epochs += f", {metrics['steps']:,} steps"
    if metrics.get("stopped_by") == "time_budget":
        epochs += f" (stopped by the {metrics['time_budget']:g} s time budget)"
    collapse = metrics.get("collapse") or {}
    if collapse.get("fired"):  # the architecture is that of an earlier epoch
        epochs += (
            f" (stopped by the collapse guard at epoch {collapse['fired_epoch']}; "
            f"the architecture of epoch {collapse['kept_epoch']})"
        )
    how = "the mixture" if metrics.get("relaxation") == "softmax" else "sampled"
    if passes > 1 and metrics.get("relaxation") != "softmax":
        how += f", mean of {passes} passes"
    export = metrics.get("export")
    next_lines = [
        f"kerasnas-train --genotype={_q(os.path.join(out, 'genotype.json'))} "
        f"--output_dir={_q(_sibling(out, 'retrain'))}   # retrain from scratch",
    ]
    if not export or "error" in export:
        next_lines.append(
            f"kerasnas-export --model={_q(os.path.join(out, 'child.keras'))} "
            f"--output_dir={_q(_sibling(out, 'deploy'))}   # TFLite, SavedModel"
        )
    next_lines.append(f"tensorboard --logdir {_q(os.path.join(out, 'tensorboard'))}")
    rows: list[Row] = [
        ("architecture", genotype_lines(genotype)),
        (
            "supernet",
            f"valid {_acc(metrics.get('supernet_valid_accuracy'))}, test "
            f"{_acc(metrics.get('supernet_test_accuracy'))} ({metrics.get('relaxation')}: {how})",
        ),
        (
            "child",
            f"valid {_acc(metrics.get('child_valid_accuracy'))}, test "
            f"{_acc(metrics.get('child_test_accuracy'))} (the supernet's weights, no retraining)",
        ),
        ("child size", _size(metrics, "child_")),
        *_target_row(metrics),
        ("exported", _latency(export)),
        ("search", f"{metrics.get('strategy')} on {metrics.get('dataset')}, {epochs}"),
        ("time", _seconds(metrics, "search_seconds")),
        (
            "files",
            _files(
                out,
                [
                    ("genotype.json", "the architecture"),
                    ("child.keras", "the child (raw images -> logits)"),
                    ("metrics.json", "the figures above"),
                    ("history.json", "one record per epoch"),
                    ("cells.png", "drawings of the cells"),
                    ("export", "exported files, export_report.json"),
                ],
            ),
        ),
        ("next", next_lines),
    ]
    return render(f"summary: {metrics.get('strategy')} search -> {out}", rows)


def _target_row(metrics: dict[str, Any]) -> list[Row]:
    """The cost target's row (none without a target)."""
    if metrics.get("target") is None:
        return []
    from kerasnas.target import format_cost

    res = metrics["target_resource"]
    return [
        (
            "cost target",
            f"{metrics['target']}: the child has {format_cost(metrics['child_cost'], res)}, "
            f"{metrics['target_ratio']:.3f} of the target (final penalty weight "
            f"{metrics['final_penalty_weight']:.3g})",
        )
    ]


def retrain(metrics: dict[str, Any], output_dir: str) -> str:
    """The summary of ``kerasnas-train`` (`metrics`: its ``metrics.json``)."""
    out = output_dir
    epochs = f"{metrics.get('epochs_done', metrics.get('epochs'))} epochs"
    if metrics.get("steps") is not None:
        epochs += f", {metrics['steps']:,} steps"
    accuracy = (
        f"valid {_acc(metrics.get('valid_accuracy'))}, test {_acc(metrics.get('test_accuracy'))}"
    )
    if metrics.get("final_train_accuracy") is not None:
        accuracy += f"; train {metrics['final_train_accuracy']:.4f} (last epoch's running mean)"
    rows: list[Row] = [
        ("architecture", genotype_lines(metrics.get("genotype") or {})),
        ("accuracy", accuracy),
        ("size", _size(metrics)),
        ("training", f"{metrics.get('dataset')}, {epochs}"),
        ("time", _seconds(metrics, "seconds")),
        (
            "files",
            _files(
                out,
                [
                    ("model.keras", "the trained network (raw images -> logits)"),
                    ("genotype.json", "the architecture"),
                    ("metrics.json", "the figures above"),
                    ("history.json", "one record per epoch"),
                ],
            ),
        ),
        (
            "next",
            f"kerasnas-export --model={_q(os.path.join(out, 'model.keras'))} "
            f"--output_dir={_q(_sibling(out, 'deploy'))}   # TFLite, SavedModel",
        ),
    ]
    return render(f"summary: retraining -> {out}", rows)


def trial_based(metrics: dict[str, Any], output_dir: str) -> str:
    """The summary of a trial-based search (`metrics`: its ``metrics.json``)."""
    out = output_dir
    arch = metrics.get("best_architecture") or {}
    if metrics.get("search_space") == "cell":
        found = genotype_lines(arch)
        model_next = (
            f"kerasnas-train --genotype={_q(os.path.join(out, 'genotype.json'))} "
            f"--output_dir={_q(_sibling(out, 'retrain'))}   # retrain larger, longer"
        )
    else:
        text = json.dumps(arch, separators=(",", ":"))
        found = [text if len(text) <= 160 else text[:157] + "..."]
        model_next = ""
    trials = f"{metrics.get('trials_completed')} of {metrics.get('trials')} trials completed"
    if metrics.get("trials_failed"):
        trials += f", {metrics['trials_failed']} failed"
    export = metrics.get("export")
    next_lines = [model_next] if model_next else []
    if not export or "error" in export:
        next_lines.append(
            f"kerasnas-export --model={_q(os.path.join(out, 'best.keras'))} "
            f"--output_dir={_q(_sibling(out, 'deploy'))}   # TFLite, SavedModel"
        )
    rows: list[Row] = [
        ("architecture", found),
        (
            "best trial",
            f"id {metrics.get('best_trial_id')}: reward {_acc(metrics.get('best_reward'))}, "
            + (
                f"estimate {_acc(metrics.get('best_estimate_accuracy'))}, retrained "
                if metrics.get("best_model") == "retrained"
                else ""
            )
            + f"valid {_acc(metrics.get('best_valid_accuracy'))}, "
            f"test {_acc(metrics.get('best_test_accuracy'))}",
        ),
        ("size", _size(metrics, "best_")),
        ("exported", _latency(export)),
        (
            "search",
            f"{metrics.get('strategy')} over {metrics.get('search_space')} on "
            f"{metrics.get('dataset')}: {trials}",
        ),
        ("time", _trial_time(metrics)),
        ("front", _front(metrics.get("pareto"))),
        (
            "files",
            _files(
                out,
                [
                    ("genotype.json", "the best architecture"),
                    ("architecture.json", "the best architecture"),
                    ("best.keras", "the best trial's model (raw images -> logits)"),
                    ("retrain", "the top trials retrained in full"),
                    ("metrics.json", "the figures above"),
                    ("history.csv", "one row per trial"),
                    ("search_curve.png", "best reward against trials and time"),
                    ("export", "exported files, export_report.json"),
                    ("pareto.csv", "every trial's cost and test accuracy, the front marked"),
                    ("pareto.png", "the front of (cost, test accuracy)"),
                    ("front", "the exported front points, a TFLite each"),
                ],
            ),
        ),
        ("next", next_lines),
    ]
    return render(f"summary: {metrics.get('strategy')} search -> {out}", rows)


def _front(front: dict[str, Any] | None) -> str:
    """The trial front's size and exports (``metrics["pareto"]``); "" without one."""
    if not front:
        return ""
    text = (
        f"{len(front['front'])} of {front['points']} trials on the ({front['resource']}, test "
        f"accuracy) front, {len(front['exported'])} exported"
    )
    if front.get("export_failures"):
        text += f", {len(front['export_failures'])} exports failed"
    return text


def _trial_time(metrics: dict[str, Any]) -> str:
    """The search's seconds, and the retraining's and the total when there was one."""
    text = f"{metrics.get('search_seconds', 0):.0f} s"
    if metrics.get("retrained"):
        text += (
            f" search + {metrics.get('retrain_seconds', 0):.0f} s retraining the top "
            f"{len(metrics['retrained'])} = {metrics.get('total_seconds', 0):.0f} s"
        )
    return text


def comparison(
    summary: dict[str, Any], labels: dict[str, str], best: dict[str, Any] | None, output_dir: str
) -> str:
    """The summary of ``kerasnas-compare``: `summary` is its ``summary.json``, `labels` the
    strategies' names to show, `best` the row (with ``strategy``, ``seed``,
    ``retrained_test_accuracy``) of the best retrained run, and ``search_dir`` its search."""
    out = output_dir
    header = ("strategy", "supernet", "child", "drop", "retrained test", "epochs", "steps")
    table = [header]
    for name, stats in summary.get("strategies", {}).items():

        def mean(col: str, fmt: str = ".3f", stats: dict = stats) -> str:
            return format(stats[col]["mean"], fmt) if col in stats else "-"

        retrained = mean("retrained_test_accuracy")
        if "retrained_test_accuracy" in stats and stats["retrained_test_accuracy"]["n"] > 1:
            retrained += f" +- {stats['retrained_test_accuracy']['std']:.3f}"
        table.append(
            (
                labels.get(name, name),
                mean("supernet_valid_accuracy"),
                mean("child_valid_accuracy"),
                mean("accuracy_drop", "+.3f"),
                retrained,
                mean("epochs_done", ".3g"),
                mean("steps", ".0f"),
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = [
        "  ".join(f"{cell:<{w}}" for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in table
    ]
    budget = summary.get("budget", {})
    if budget.get("kind") == "time":
        said = f"{budget.get('search_seconds'):g} s of search per run (not deterministic)"
    else:
        said = f"{budget.get('epochs')} supernet epochs per search"
    rows: list[Row] = [
        ("means", lines),
        ("", "supernet, child (no retraining): validation accuracy; drop: supernet - child"),
        ("budget", said),
        ("time", f"{summary.get('seconds', 0):.0f} s"),
        (
            "files",
            _files(
                out,
                [
                    ("comparison.csv", "one row per run"),
                    ("summary.json", "means and standard deviations"),
                    ("accuracy_vs_epoch.png", "supernet accuracy while searching"),
                    ("supernet_vs_child.png", "supernet against child"),
                    ("entropy_vs_epoch.png", "architecture entropy while searching"),
                    ("runs", "each run's search/ and retrain/ directories and logs"),
                ],
            ),
        ),
    ]
    if best is not None:
        rows.append(
            (
                "next",
                f"kerasnas-export --model={_q(os.path.join(best['retrain_dir'], 'model.keras'))} "
                f"--output_dir={_q(_sibling(out, 'deploy'))}   # the best retrained child: "
                f"{labels.get(best['strategy'], best['strategy'])}, seed {best['seed']}",
            )
        )
    return render(f"summary: comparison -> {out}", rows)


def export(report: dict[str, Any], output_dir: str) -> str:
    """The summary of ``kerasnas-export`` (`report`: its ``export_report.json``)."""
    model = report.get("model", {})
    formats = report.get("formats", {})
    names = [(e["file"], fmt) for fmt, e in formats.items()]
    width = max((len(fmt) for fmt in formats), default=0)
    path_width = max((len(os.path.join(output_dir, name)) for name, _ in names), default=0)
    lines = []
    for fmt, e in formats.items():
        parts = [*_format_figures(e), "passed" if e.get("passed") else "FAILED"]
        path = os.path.join(output_dir, e["file"])
        lines.append(f"{fmt:<{width}}  {path:<{path_width}}  {', '.join(parts)}")
    keras_acc = report.get("keras_accuracy")
    threads = report.get("latency", {}).get("num_threads")
    rows: list[Row] = [
        ("model", f"{model.get('source')}: {_count(model.get('params'))} weights (count_params)"),
        (
            "checked on",
            f"{report.get('eval_examples')} test images of {report.get('dataset')}"
            + ("" if keras_acc is None else f"; the Keras model's accuracy {keras_acc:.4f}"),
        ),
        ("formats", lines),
        (
            "ms/image",
            "median of one LiteRT Interpreter.invoke"
            + (f", {threads} thread(s)" if threads else ""),
        ),
        ("report", _files(output_dir, [("export_report.json", "sizes, checks, latency")])),
        ("use", _use(output_dir, names)),
    ]
    return render(f"summary: export -> {output_dir}", rows)


def _use(output_dir: str, files: Sequence[tuple[str, str]]) -> list[str]:
    """How to load the exported `files` ((file, format) pairs) in Python without kerasnas:
    the first TFLite file, and the SavedModel."""
    lines = []
    tflite = [name for name, fmt in files if fmt.startswith("tflite")]
    if tflite:
        path = os.path.join(output_dir, tflite[0])
        lines.append(f"ai_edge_litert.interpreter.Interpreter(model_path={path!r})")
    saved = [name for name, fmt in files if fmt == "saved_model"]
    if saved:
        path = os.path.join(output_dir, saved[0])
        lines.append(f"tf.saved_model.load({path!r}).signatures['serving_default'](images=...)")
    return lines
