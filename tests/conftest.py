"""The test suite's pytest configuration: the ``slow`` marker, and a note of unmarked slow
tests at the end of a run.

Two commands (see the README's "Development" section):

- the full suite, the README's and CI's command: ``python -m pytest tests -q -n 2``;
- the fast subset for development: ``python -m pytest tests -q -n 2 -m "not slow"``
  (under 3 minutes on 2 cores).

The rule: a test is ``slow`` when it takes more than about 3 s on its own (setup + call +
teardown, single process, ``python -m pytest tests/test_x.py -q --durations=0`` on a
quiet machine; a module-scoped fixture's setup counts for the first test that uses it).
Mark it with ``@pytest.mark.slow``, a parameter with
``pytest.param(..., marks=pytest.mark.slow)``, or a whole module with
``pytestmark = pytest.mark.slow``. Every module keeps at least one fast test (an import, a
layer, a flag parse, a one-line error) so that the fast subset still catches a broken
module; when all of a module's tests are slow, add a small fast one. New test files follow
the same rule: a run lists the unmarked tests above the threshold (:func:`pytest_terminal_summary`).
"""

from __future__ import annotations

import pytest

from kerasnas import threads

# the jobs' thread pools (one thread per op, see kerasnas.threads), set before any test runs
# an op, so that in-process runs compute as the command lines' subprocesses do
threads.configure(intra_op_threads=1)

SLOW_SECONDS = 3.0  # the rule above; the note below uses it

_unmarked: dict[str, float] = {}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"slow: takes more than about {SLOW_SECONDS:g} s on its own; "
        'deselect with -m "not slow" (tests/conftest.py states the rule)',
    )


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Adds up each unmarked test's setup, call and teardown seconds (with pytest-xdist this
    runs in the controller, on the workers' reports)."""
    if "slow" not in report.keywords:
        _unmarked[report.nodeid] = _unmarked.get(report.nodeid, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    """Lists the tests without the ``slow`` marker that took over twice the threshold (a
    margin for a loaded machine): candidates for the marker."""
    slow = sorted(
        ((seconds, nodeid) for nodeid, seconds in _unmarked.items() if seconds > 2 * SLOW_SECONDS),
        reverse=True,
    )
    if slow:
        terminalreporter.write_sep("=", f"unmarked tests over {2 * SLOW_SECONDS:g} s")
        for seconds, nodeid in slow:
            terminalreporter.write_line(f"{seconds:6.1f}s {nodeid}")
        terminalreporter.write_line(
            f"(a test over about {SLOW_SECONDS:g} s on its own gets @pytest.mark.slow: "
            "tests/conftest.py)"
        )
