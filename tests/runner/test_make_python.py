"""`make ... PYTHON=...` with a Python that cannot be used: one line that says so, and how to name another."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tutorial.processes import REPO_ROOT, ManagedProcess, wait_for_exit

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not on PATH")

ADVICE = "name a Python 3.11 or newer, as in make install PYTHON=python3.12 or PYTHON=/usr/bin/python3"


def make_install(python: str, tmp_path: Path) -> tuple[int, list[str]]:
    # A VENV of the test's own: should the check let the command through, nothing of the checkout changes.
    command = ["make", "--no-print-directory", "install", f"PYTHON={python}", f"VENV={tmp_path / 'venv'}"]
    with ManagedProcess("make", command, cwd=REPO_ROOT, log_dir=tmp_path / "logs") as make:
        status = wait_for_exit(make, timeout=30)
    return status, make.output().splitlines()


def test_a_python_that_is_not_there_is_one_line_naming_it_and_how_to_name_another(tmp_path: Path) -> None:
    status, lines = make_install("no-such-python3", tmp_path)

    assert status != 0
    assert lines[0].startswith("PYTHON=no-such-python3 cannot be used ("), lines
    assert lines[0].endswith(f"): {ADVICE}"), lines
    assert len(lines) == 2 and lines[1].startswith("make: *** "), lines  # make's own line: which target failed
    assert not (tmp_path / "venv").exists()


def test_a_pyenv_shim_of_a_version_not_active_is_one_line_not_pyenv_s_advice(tmp_path: Path) -> None:
    # What pyenv's shim prints (first lines) and returns for python3.13 when another version is active.
    shim = tmp_path / "python3.13"
    shim.write_text(
        "#!/bin/sh\n"
        "echo 'pyenv: python3.13: command not found' >&2\n"
        "echo 'The `python3.13` command exists in these Python versions:' >&2\n"
        "exit 127\n"
    )
    shim.chmod(0o755)

    status, lines = make_install(str(shim), tmp_path)

    assert status != 0
    assert lines[0] == f"PYTHON={shim} cannot be used (pyenv: python3.13: command not found): {ADVICE}"
    assert len(lines) == 2 and lines[1].startswith("make: *** "), lines
