"""Every command the READMEs show runs, in order, and prints what the README shows.

How to mark up a README: the docstring of tests/docs/harness.py. Adding one: a line below.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.docs.harness import exempt_commands, run_readme
from tutorial.processes import REPO_ROOT

READMES = [
    "README.md",
    "stage1_background_tasks/README.md",
    "stage2_celery/README.md",
    "stage3_retries/README.md",
    "stage4_rq_dramatiq/README.md",
    "stage5_monitoring/README.md",
    "bench/README.md",
]
# A stage README not run yet, and why; its owner moves it to READMES once its markup is done.
NOT_YET: dict[str, str] = {}


# The READMEs of stages 2-5 take 15 to 30 s each (tests/conftest.py spreads the long tests).
LONG_READMES = [readme for readme in READMES if readme.startswith(("stage2", "stage3", "stage4", "stage5"))]


@pytest.mark.timeout(180)  # one test runs a whole README: several servers and dozens of commands
@pytest.mark.parametrize(
    "readme", [pytest.param(readme, marks=[pytest.mark.long] if readme in LONG_READMES else []) for readme in READMES]
)
def test_every_command_of_the_readme_runs_and_prints_what_it_shows(
    readme: str, tmp_path: Path, record_property: pytest.RecordProperty
) -> None:
    report = run_readme(REPO_ROOT / readme, tmp_path)
    record_property("readme_summary", report.summary())
    if report.failure is not None:
        pytest.fail(report.failure_message(), pytrace=False)


def test_every_stage_readme_is_run_from_its_first_version() -> None:
    stage_readmes = sorted(str(path.relative_to(REPO_ROOT)) for path in REPO_ROOT.glob("stage*/README.md"))
    unlisted = [readme for readme in stage_readmes if readme not in READMES and readme not in NOT_YET]
    assert not unlisted, (
        f"add {unlisted} to READMES in tests/docs/test_readmes.py (how to mark one up: tests/docs/harness.py)"
    )
    assert not set(READMES) & set(NOT_YET), "a README is in both READMES and NOT_YET"


@pytest.mark.parametrize("readme", READMES)
def test_every_relative_link_of_the_readme_leads_to_a_file(readme: str) -> None:
    path = REPO_ROOT / readme
    targets = re.findall(r"\]\(([^)\s]+)\)", path.read_text())
    local = [target.split("#")[0] for target in targets if not re.match(r"[a-z]+:|#", target)]
    missing = [target for target in local if not (path.parent / target).exists()]
    assert not missing, f"{readme} links to files that do not exist: {missing}"


EXEMPT = [
    pytest.param(f"{readme} line {command.line}: `{command.short()}`: {command.exempt}", id=f"{readme}:{command.line}")
    for readme in READMES
    for command in exempt_commands(REPO_ROOT / readme)
] + [pytest.param(f"{readme}, the whole README: {reason}", id=readme) for readme, reason in NOT_YET.items()]


@pytest.mark.parametrize("exemption", EXEMPT or [pytest.param("", marks=pytest.mark.skip("no exempt command"))])
def test_exempt_readme_command(exemption: str) -> None:
    """Not a check: each exempt command shows in every run's summary (-ra) as a skip, with its reason."""
    pytest.skip(f"exempt, not run: {exemption}")
