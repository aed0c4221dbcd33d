"""After `pytest tests/docs`: how many README commands ran, and which were exempt and why.

(With pytest-xdist, the controller loads this file only when tests/docs is named on the
command line; in the full run, the exempt commands still show as skips with their reasons.)
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
    if summaries:
        terminalreporter.section("README commands")
        for summary in sorted(summaries):
            terminalreporter.write_line(summary)
