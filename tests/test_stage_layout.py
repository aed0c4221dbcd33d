"""Every stage is a self-contained package: it imports only itself and installed third-party packages."""

from __future__ import annotations

import ast
import importlib.metadata
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
STAGES = sorted(path for path in REPO.glob("stage*_*") if path.is_dir())
THIRD_PARTY = importlib.metadata.packages_distributions()  # {top-level module: [distribution, ...]}


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


# Images ---------------------------------------------------------------------------------------------

LOCK = {
    line.split("==")[0].lower().replace("_", "-"): line.split("==")[1].split(";")[0].strip()
    for line in (REPO / "requirements.lock").read_text().splitlines()
    if "==" in line and not line.startswith("#")
}
STAGES_WITH_AN_IMAGE = [stage for stage in STAGES if (stage / "Dockerfile").is_file()]


def stage_requirements(stage: Path) -> dict[str, str]:
    """{distribution: version} of the stage's requirements.txt (extras dropped)."""
    pins = {}
    for line in (stage / "requirements.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.split("[")[0].lower().replace("_", "-")] = version.strip()
    return pins


@pytest.mark.parametrize("stage", STAGES_WITH_AN_IMAGE, ids=lambda stage: stage.name)
def test_a_stage_image_installs_what_the_stage_imports_at_the_locked_versions(stage: Path) -> None:
    pins = stage_requirements(stage)
    missing = set()
    for source in sorted(stage.rglob("*.py")):
        for _, module in imported_modules(source):
            if module in THIRD_PARTY:
                distributions = {name.lower().replace("_", "-") for name in THIRD_PARTY[module]}
                if not distributions & set(pins):
                    missing.add(f"{module} ({source.relative_to(REPO)})")
    assert sorted(missing) == []
    assert {name: LOCK.get(name) for name in pins} == pins, "requirements.txt and requirements.lock disagree"
    assert "pytest" not in pins and "ruff" not in pins


@pytest.mark.parametrize("stage", STAGES_WITH_AN_IMAGE, ids=lambda stage: stage.name)
def test_a_stage_image_runs_as_a_user_and_leaves_the_virtual_environment_out(stage: Path) -> None:
    dockerfile = (stage / "Dockerfile").read_text()
    users = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0"), "the image's last USER must not be root"
    assert "-r requirements.txt -c requirements.lock" in dockerfile
    ignored = (REPO / ".dockerignore").read_text().splitlines()
    assert ".venv/" in ignored and ".git/" in ignored
