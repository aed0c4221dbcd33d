"""What the READMEs say about the code and the install stays true when the code changes.

A line number goes stale with the first line added above it, so a README cites code by
name: a dotted path from the README's own folder (`rq_jobs.RqJobs.enqueue` is the method
`enqueue` of the class `RqJobs` in `rq_jobs.py` beside the README). Where it gives a size,
"`rq_jobs.retries`: 6 lines" or "[`dead_letters.py`](dead_letters.py): 76 lines", the
tests below count the lines again. A block that copies code is checked by the harness
instead (`<!-- docs: same as `PATH` lines A-B -->`, tutorial/readmes.py), and is the
one place a line number may appear.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.docs.test_readmes import READMES
from tutorial.processes import REPO_ROOT

LINE_NUMBER = re.compile(r"\blines?\s+\d+|#L\d+|\.py:\d+")
# "`rq_jobs.retries`: 6 lines", "`dramatiq_app.JobStates`: 40 lines"
NAME_SIZE = re.compile(r"`(?P<name>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)`: (?P<lines>\d+) lines?\b")
# "[`dead_letters.py`](dead_letters.py): 76 lines"
FILE_SIZE = re.compile(r"\[`(?P<file>[\w./-]+)`\]\((?P=file)\): (?P<lines>\d+) lines?\b")


def prose(readme: str) -> str:
    """The README without its code blocks (a traceback's `line 1` is output) and its `same as` markers."""
    text = (REPO_ROOT / readme).read_text()
    text = re.sub(r"^(```|~~~).*?^\1", "", text, flags=re.MULTILINE | re.DOTALL)
    return re.sub(r"<!-- docs: same as .*?-->", "", text, flags=re.DOTALL)


def size_claims() -> list[tuple[str, str, int]]:
    claims = []
    for readme in READMES:
        text = " ".join(prose(readme).split())  # a claim may wrap over two lines
        claims += [(readme, match["name"], int(match["lines"])) for match in NAME_SIZE.finditer(text)]
        claims += [(readme, match["file"], int(match["lines"])) for match in FILE_SIZE.finditer(text)]
    return claims


def definition_lines(folder: Path, dotted: str) -> int:
    """How many lines the definition spans, its decorators included."""
    module, *names = dotted.split(".")
    source = folder / f"{module}.py"
    assert source.is_file(), f"`{dotted}`: there is no {source.relative_to(REPO_ROOT)}"
    body: list[ast.stmt] = ast.parse(source.read_text()).body
    node: ast.stmt | None = None
    for name in names:
        node = next((statement for statement in body if name in defined_names(statement)), None)
        assert node is not None, f"`{dotted}`: {source.relative_to(REPO_ROOT)} defines no `{name}` there"
        body = node.body if isinstance(node, ast.ClassDef) else []
    assert node is not None and node.end_lineno is not None
    first = min([node.lineno, *(decorator.lineno for decorator in getattr(node, "decorator_list", []))])
    return node.end_lineno - first + 1


def defined_names(statement: ast.stmt) -> list[str]:
    if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return [statement.name]
    if isinstance(statement, ast.Assign):
        return [target.id for target in statement.targets if isinstance(target, ast.Name)]
    if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
        return [statement.target.id]
    return []


@pytest.mark.parametrize("readme", READMES)
def test_the_readme_cites_code_by_name_never_by_line_number(readme: str) -> None:
    text = prose(readme)
    found = [
        f"line {text[: match.start()].count(chr(10)) + 1}: {match.group()!r}" for match in LINE_NUMBER.finditer(text)
    ]
    # Counted in the text without code blocks, so the line is approximate: search for the words.
    assert not found, f"{readme} cites code by line number (cite the function or class by name): {found}"


@pytest.mark.parametrize(("readme", "cited", "lines"), size_claims(), ids=lambda value: str(value))
def test_a_size_the_readme_gives_is_the_size_of_the_code_it_names(readme: str, cited: str, lines: int) -> None:
    folder = (REPO_ROOT / readme).parent
    if cited.endswith(".py") and "/" not in cited and (folder / cited).is_file():
        actual = len((folder / cited).read_text().splitlines())
    else:
        actual = definition_lines(folder, cited)
    assert actual == lines, f"{readme} says `{cited}` is {lines} lines; it is {actual} now: update the README"


def test_the_stage_4_readme_gives_sizes_for_each_library_s_code() -> None:
    # Without this, a README whose claims no longer match the patterns above would pass unchecked.
    cited = {name for readme, name, _ in size_claims() if readme == "stage4_rq_dramatiq/README.md"}
    assert {"tasks.deliver_webhook", "rq_tasks.deliver_webhook", "dramatiq_actors.deliver_webhook"} <= cited, cited


def test_the_readme_gives_the_package_count_that_make_and_the_doctor_give() -> None:
    # make counts the lines of requirements.lock that pin a version (`grep -c '=='`); so does the doctor.
    pinned = sum("==" in line for line in (REPO_ROOT / "requirements.lock").read_text().splitlines())
    counts = re.findall(r"(\d+) packages", prose("README.md"))
    assert counts == [str(pinned)], f"README.md gives {counts} packages; requirements.lock pins {pinned}"
