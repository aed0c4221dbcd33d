"""Every command the READMEs show runs, in order, and prints what the README shows.

How to mark up a README: the docstring of tutorial/readmes.py. Adding one: a line below.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tutorial.processes import REPO_ROOT, ManagedProcess, python_command, wait_for_exit
from tutorial.readmes import run_readme

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
        f"add {unlisted} to READMES in tests/docs/test_readmes.py (how to mark one up: tutorial/readmes.py)"
    )
    assert not set(READMES) & set(NOT_YET), "a README is in both READMES and NOT_YET"


@pytest.mark.parametrize("readme", READMES)
def test_every_relative_link_of_the_readme_leads_to_a_file(readme: str) -> None:
    path = REPO_ROOT / readme
    targets = re.findall(r"\]\(([^)\s]+)\)", path.read_text())
    local = [target.split("#")[0] for target in targets if not re.match(r"[a-z]+:|#", target)]
    missing = [target for target in local if not (path.parent / target).exists()]
    assert not missing, f"{readme} links to files that do not exist: {missing}"


@pytest.mark.timeout(180)  # a pytest run of its own: the suite's Redis, one README, the summary
def test_a_run_of_the_suite_ends_with_each_readme_s_commands_run_and_exempt_with_the_reason(tmp_path: Path) -> None:
    # As `make test` runs it: from the suite's folder, in parallel, where the process that prints
    # the summary loads only tests/conftest.py. Only bench/README.md runs: both its commands
    # are exempt, so it takes no time; the other folders are left out, so collecting takes none.
    kept = ("docs", "conftest.py", "__init__.py")
    others = [path for path in (REPO_ROOT / "tests").iterdir() if path.name not in kept]
    command = python_command(
        "-m", "pytest", "tests", "-n", "1", "-p", "no:cacheprovider",
        *(f"--ignore={path.relative_to(REPO_ROOT)}" for path in others),
        "-k", "readme_runs_and_prints and bench",
    )  # fmt: skip
    with ManagedProcess("suite", command, cwd=REPO_ROOT, log_dir=tmp_path) as suite:
        status = wait_for_exit(suite, timeout=150)
    output = suite.output()

    assert status == 0, output
    assert "1 passed" in output, output
    summary = output.split("README commands")[1]
    assert "README.md: " in summary and " commands ran, " in summary, output
    exempt = r"exempt, line \d+: `make bench\b[^`]*`: seven minutes of measuring"
    assert re.search(exempt, summary), output
