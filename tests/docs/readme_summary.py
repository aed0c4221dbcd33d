"""After a run that ran READMEs: how many commands each one ran, and each exempt one with its reason.

A plugin, named by `pytest_plugins` in tests/conftest.py, not a tests/docs/conftest.py: with
pytest-xdist the process that prints the summary collects no test, and so loads only the
conftest.py files of the paths on the command line (for `make test`, tests/conftest.py).
"""

from __future__ import annotations

import pytest


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    summaries = [
        value
        for outcome in ("passed", "failed")
        for report in terminalreporter.stats.get(outcome, [])
        for name, value in getattr(report, "user_properties", [])
        if name == "readme_summary"
    ]
    if not summaries:
        return
    from tests.docs.test_readmes import NOT_YET  # late: only a run that ran READMEs needs it

    terminalreporter.section("README commands")
    for summary in sorted(summaries):
        terminalreporter.write_line(summary)
    for readme, reason in NOT_YET.items():
        terminalreporter.write_line(f"{readme}: not run yet: {reason}")
