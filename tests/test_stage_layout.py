"""Every stage is a self-contained package: it imports only itself and installed third-party packages."""

from __future__ import annotations

import ast
import importlib.metadata
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
STAGES = sorted(path for path in REPO.glob("stage*_*") if path.is_dir())
THIRD_PARTY = set(importlib.metadata.packages_distributions())


def imported_modules(source: Path) -> list[tuple[int, str]]:
    """(line, top-level module) of every absolute import in a file; relative ones stay inside the stage."""
    found = []
    for node in ast.walk(ast.parse(source.read_text(), filename=str(source))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def test_the_first_stage_exists() -> None:
    assert [stage.name for stage in STAGES][:1] == ["stage1_background_tasks"]


@pytest.mark.parametrize("stage", STAGES, ids=lambda stage: stage.name)
def test_a_stage_imports_only_itself_the_standard_library_and_third_party_packages(stage: Path) -> None:
    wrong = []
    for source in sorted(stage.rglob("*.py")):
        for line, module in imported_modules(source):
            allowed = module == stage.name or module in sys.stdlib_module_names or module in THIRD_PARTY
            if not allowed:
                wrong.append(f"{source.relative_to(REPO)}:{line} imports {module}")
    assert wrong == []


@pytest.mark.parametrize("stage", STAGES, ids=lambda stage: stage.name)
def test_a_stage_has_its_app_its_settings_and_its_readme(stage: Path) -> None:
    for name in ("__init__.py", "config.py", "main.py", "README.md"):
        assert (stage / name).is_file(), f"{stage.name} has no {name}"


def test_the_import_check_catches_an_import_of_the_runner(tmp_path: Path) -> None:
    source = tmp_path / "main.py"
    source.write_text("import os\nfrom tutorial.mail import SmtpSink\nfrom . import config\n")
    assert imported_modules(source) == [(1, "os"), (2, "tutorial")]
    assert "tutorial" not in THIRD_PARTY and "tutorial" not in sys.stdlib_module_names
