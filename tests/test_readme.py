"""The README's code runs as written.

Every ```python block of README.md runs, in README order, each in a fresh Python process
(so a block that forgets an import fails), all in one temporary working directory (so their
outputs land there, and a block may read what an earlier one wrote). A ```bash block runs
when the line before it is the marker ``<!-- runnable -->``: its commands run as written
with ``bash -e``, after the test has put stand-ins for the quick start's outputs in place
(see ``STAND_INS``). The ``kerasnas-*`` commands run as ``python -m kerasnas.cli.*`` (the
same entry points, as the README says) with this interpreter, so the checkout under test
is what runs.

Budgets. So that every block takes seconds, the test rewrites the python blocks' sizes
before running them (``BUDGETS``: e.g. ``epochs=30`` runs as ``epochs=1``); nothing else is
changed, and a reader's copy runs the values the README shows. Bash blocks get no budget.

Opting out. A python block that is only an illustration (it needs data that is not here,
say) may be preceded by ``<!-- not run: <reason> -->``. The opted-out blocks are listed in
``OPTED_OUT`` below, so an opt-out shows in this file's diff. Any other HTML comment right
before a block is an error, so a misspelt marker cannot silently skip a block.

PYTHONPATH is honoured: the checkout's root goes in front of it.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

# (pattern, replacement, what it does): applied in order to every python block.
BUDGETS: tuple[tuple[str, str, str], ...] = (
    (r"\bepochs=\d+", "epochs=1", "one epoch"),
    (r"\binit_channels=\d+", "init_channels=4", "C = 4"),
    (r"\blayers=\d+", "layers=3", "L = 3 cells, the fewest with both cell types"),
    (r"\bnodes=\d+", "nodes=1", "one intermediate node per cell"),
    (
        r'(\bkerasnas\.data\.load\("digits")\)',
        r"\1, max_examples=128)",
        "128 training images (2 batches)",
    ),
)

# README python blocks that do not run, by their first line; keep this short.
OPTED_OUT: tuple[str, ...] = ()

RUNNABLE = "runnable"
NOT_RUN = "not run:"
COMMANDS = ("compare", "export", "latency", "search", "train")
BLOCK_TIMEOUT = 600  # seconds; a block takes seconds to a minute
_FENCE = re.compile(r"^```(\w*)\s*$")
_COMMENT = re.compile(r"^<!--\s*(.*?)\s*-->$")
_NOISE = re.compile(r"^(I0000|W0000|E0000|WARNING: All log messages|To enable the following)")


@dataclasses.dataclass(frozen=True)
class Block:
    """A fenced block of a markdown file: language, code, the 1-based line of its opening
    fence, and the HTML comment on the line before it (``None`` when there is none)."""

    language: str
    code: str
    line: int
    marker: str | None

    @property
    def runs(self) -> bool:
        if self.language == "python":
            return self.marker is None
        return self.language == "bash" and self.marker == RUNNABLE

    def title(self) -> str:
        first = next((s for s in self.code.splitlines() if s.strip()), "")
        return f"README line {self.line} ({self.language}): {first.strip()}"


@dataclasses.dataclass(frozen=True)
class Outcome:
    block: Block
    returncode: int
    output: str  # stdout and stderr, TensorFlow's start-up noise removed
    budgets: tuple[str, ...]  # the BUDGETS rules that changed the block
    seconds: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def report(self, lines: int = 40, chars: int = 4000) -> str:
        tail = "\n".join(self.output.splitlines()[-lines:])[-chars:]
        budgets = f" [budgets: {', '.join(self.budgets)}]" if self.budgets else ""
        return (
            f"{self.block.title()}{budgets}: exit code {self.returncode} after "
            f"{self.seconds:.0f} s\n{tail}"
        )


def parse_blocks(text: str) -> list[Block]:
    """The fenced blocks of markdown `text`; ValueError on an unclosed fence or an HTML
    comment before a block that is not a known marker."""
    lines = text.splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        start = i
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), None)
        if end is None:
            raise ValueError(f"line {start + 1}: unclosed code fence")
        before = next((s.strip() for s in reversed(lines[:start]) if s.strip()), "")
        comment = _COMMENT.match(before)
        marker = comment.group(1) if comment else None
        if marker is not None and not (
            marker == RUNNABLE or (marker.startswith(NOT_RUN) and marker[len(NOT_RUN) :].strip())
        ):
            raise ValueError(
                f"line {start + 1}: unknown marker <!-- {marker} --> before a code block; "
                f"use <!-- {RUNNABLE} --> (bash) or <!-- {NOT_RUN} <reason> -->"
            )
        code = "\n".join(lines[start + 1 : end]) + "\n"
        blocks.append(Block(match.group(1), code, start + 1, marker))
        i = end + 1
    return blocks


def apply_budgets(code: str) -> tuple[str, tuple[str, ...]]:
    """`code` with BUDGETS applied, and the descriptions of the rules that changed it."""
    used = []
    for pattern, replacement, what in BUDGETS:
        new = re.sub(pattern, replacement, code)
        if new != code:
            used.append(what)
        code = new
    return code, tuple(used)


def _env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, "TF_CPP_MIN_LOG_LEVEL": "2"}


def _clean(text: str) -> str:
    return "\n".join(s for s in text.splitlines() if not _NOISE.match(s))


def run_block(block: Block, workdir: Path, scripts: Path) -> Outcome:
    """Runs one block in a fresh process with `workdir` as working directory."""
    if block.language == "python":
        code, budgets = apply_budgets(block.code)
        script = scripts / f"readme_line{block.line}.py"
        argv = [sys.executable, str(script)]
    else:
        code, budgets = block.code, ()
        python = shlex.quote(sys.executable)
        shims = "".join(
            f'function kerasnas-{c} {{ {python} -m kerasnas.cli.{c} "$@"; }}\n' for c in COMMANDS
        )
        code = f"set -e -o pipefail\n{shims}{code}"
        script = scripts / f"readme_line{block.line}.sh"
        argv = ["bash", str(script)]
    script.write_text(code, encoding="utf-8")
    start = time.monotonic()
    try:
        result = subprocess.run(
            argv,
            cwd=workdir,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=BLOCK_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as e:
        return Outcome(block, -1, f"timed out after {e.timeout} s", budgets, e.timeout)
    output = _clean(result.stdout + result.stderr)
    return Outcome(block, result.returncode, output, budgets, time.monotonic() - start)


def run_blocks(blocks: list[Block], workdir: Path) -> list[Outcome]:
    """Runs the blocks that run (see :attr:`Block.runs`), in order, all in `workdir`."""
    scripts = workdir.parent / f"{workdir.name}_scripts"
    scripts.mkdir(exist_ok=True)
    return [run_block(b, workdir, scripts) for b in blocks if b.runs]


def _failures(outcomes: list[Outcome]) -> str:
    for o in outcomes:  # shown with -rA or -s: what ran, with which budgets, how long
        print(f"{o.block.title()}: {'ok' if o.ok else 'FAILED'}, {o.seconds:.0f} s", o.budgets)
    return "\n\n".join(o.report() for o in outcomes if not o.ok)


def _readme_blocks() -> list[Block]:
    return parse_blocks(README.read_text(encoding="utf-8"))


# ------------------------------------------------------------------------------- stand-ins


def _quick_start_child(path: Path) -> None:
    """A small trained digits classifier in the form of the quick start's child.keras: raw
    images in (normalisation is its first layer), logits out."""
    import keras

    from kerasnas import data

    bundle = data.load("digits")
    x, y = bundle.numpy("train")
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input(bundle.input_shape),
            bundle.normalization_layer(),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(bundle.num_classes),
        ]
    )
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=64, epochs=20, verbose=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)


# files of the quick start (`kerasnas-search --output_dir=run`) the runnable blocks read
STAND_INS = {"run/child.keras": _quick_start_child}


# ---------------------------------------------------------------------------- the README


def test_readme_markers_and_opt_outs():
    blocks = _readme_blocks()
    python = [b for b in blocks if b.language == "python"]
    assert len(python) >= 3, "no python blocks found: is the parser broken?"
    opted_out = tuple(b.code.splitlines()[0] for b in python if not b.runs)
    assert opted_out == OPTED_OUT, "\n".join(b.title() for b in python if not b.runs)
    runnable = [b for b in blocks if b.language == "bash" and b.runs]
    assert runnable, "no <!-- runnable --> bash block"
    for b in blocks:
        assert b.marker != RUNNABLE or b.language == "bash", f"{b.title()}: runnable is for bash"


def test_every_budget_rule_applies_to_the_readme():
    python = [b.code for b in _readme_blocks() if b.language == "python" and b.runs]
    used = {what for code in python for what in apply_budgets(code)[1]}
    assert used == {what for _, _, what in BUDGETS}


@pytest.mark.slow  # every README example, about 2 minutes
def test_readme_blocks_run_in_order(tmp_path):
    """Every python block and every runnable bash block, in README order, in one working
    directory (a later block may read what an earlier one wrote, as a reader's would)."""
    workdir = tmp_path / "work"
    for name, make in STAND_INS.items():
        make(workdir / name)
    before = sorted(str(p.relative_to(workdir)) for p in (workdir / "run").rglob("*"))
    blocks = [b for b in _readme_blocks() if b.language in ("python", "bash")]
    outcomes = run_blocks(blocks, workdir)
    python = [b for b in blocks if b.language == "python"]
    bash = [b for b in blocks if b.language == "bash" and b.runs]
    assert bash and len(outcomes) == len(python) - len(OPTED_OUT) + len(bash)
    failures = _failures(outcomes)
    assert not failures, failures
    # a reader who ran the quick start keeps its results: no example writes into run/
    after = sorted(str(p.relative_to(workdir)) for p in (workdir / "run").rglob("*"))
    assert after == before, sorted(set(after) - set(before))


def test_readme_outputs_are_gitignored():
    text = README.read_text(encoding="utf-8")
    written = re.findall(r"--output_dir=([\w.-]+)", text)
    written += re.findall(r'output_dir="([\w.-]+)"', text)
    written += re.findall(r'\.save\("([\w.-]+)', text)  # a file, or the folder of one
    assert "run" in written and "deploy" in written
    lines = (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()
    ignored = {s.strip().strip("/") for s in lines if s.strip().startswith("/")}
    assert set(written) <= ignored, sorted(set(written) - ignored)


# --------------------------------------------------------------------------- the checker

_FAKE = """\
# A README

```python
print(dict(epochs=30, layers=8))
```

Text.

```python
import json
print(undefined_name)
```

<!-- not run: an illustration -->
```python
raise SystemExit(9)
```

<!-- runnable -->
```bash
echo ran > ran.txt
kerasnas-nothing || echo "shim missing"
exit 7
```

```bash
exit 8
```
"""


def test_checker_reports_a_broken_block(tmp_path):
    blocks = parse_blocks(_FAKE)
    assert [(b.language, b.line, b.marker) for b in blocks] == [
        ("python", 3, None),
        ("python", 9, None),
        ("python", 15, "not run: an illustration"),
        ("bash", 20, RUNNABLE),
        ("bash", 26, None),
    ]
    workdir = tmp_path / "work"
    workdir.mkdir()
    first, broken, bash = run_blocks(blocks, workdir)
    assert first.ok and "{'epochs': 1, 'layers': 3}" in first.output
    assert first.budgets == ("one epoch", "L = 3 cells, the fewest with both cell types")
    assert not broken.ok and "NameError: name 'undefined_name'" in broken.output
    assert "line 2" in broken.output  # the traceback points into the block
    assert "README line 9 (python): import json: exit code 1 after" in _failures([broken])
    assert bash.returncode == 7 and (workdir / "ran.txt").read_text() == "ran\n"
    assert "shim missing" in bash.output


@pytest.mark.parametrize(
    "marker", ["<!-- runable -->", "<!-- not run -->", "<!-- not run:  -->", "<!-- skip -->"]
)
def test_an_unknown_marker_is_an_error(marker):
    with pytest.raises(ValueError, match="unknown marker"):
        parse_blocks(f"text\n\n{marker}\n```python\npass\n```\n")


def test_an_unclosed_fence_is_an_error():
    with pytest.raises(ValueError, match="line 2: unclosed"):
        parse_blocks("text\n```bash\nls\n")
