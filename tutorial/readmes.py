"""Run the commands a README shows, in order, and compare their output with what it shows.

Why a harness of our own: cram/prysk transcripts are `.t` files, not Markdown;
pytest-markdown-docs and phmdoctest run Python blocks only; byexample runs shell
examples in Markdown but has no notion of the processes a README leaves running
"in terminal 1", of waiting until they are ready, or of moving the learner's ports
(6379, 8000, ...) to free ones. This module does those three things, and little else.

One story, told once: the suite runs every README this way (tests/docs/test_readmes.py), and
`make demo` narrates each stage by running its README the same way, showing the lead-in
text, each command and what it printed (tutorial/demo.py). There is no second script of
the course to drift from the READMEs.

How a README is read
====================

A fenced code block is a **command block** when its info string is `console`, `sh`,
`bash`, `shell` or `shell-session`, or when any of its lines starts with `$ `. In it:

- a line starting with `$ ` is a command; a command line ending in `\\` continues on
  the next line (as in a shell);
- the lines after a command, up to the next `$ `, are its **expected output**
  (stdout and stderr together, as a terminal shows them). No lines shown: the output
  is not compared, only the exit status (0).

A `python` block is either cited (see `same as` below) or run with the stage's Python,
and must exit with 0. Other blocks (diagrams, JSON, plain output) are not read,
unless a marker says so (`output of`).

A command line never holds a UUID (a job id): a learner who pastes it would ask for a
job that is not theirs. The id flows from the command that made the job, in a shell
variable (`JOB=$(curl ... | .venv/bin/python -m tutorial job-id)`, then `curl
localhost:8000/jobs/$JOB`); a README with a UUID in a command line fails before it runs.
As in the one terminal a learner pastes into, a variable that a command sets is set
for the commands after it (and for the processes started after it).

Commands run one after the other, top to bottom, each in a fresh `bash -c` from the
repository root: more exactly, from a scratch copy of the checkout as git would commit
it (no ignored files such as an old `audit.log`), where `.venv` is the environment the
suite runs in, so that what a command writes stays out of the checkout. Each README
gets a Redis of its own, empty at the start. The environment is the suite's, plus the
stages' settings for the moved ports (see "Ports"), plus what a terminal would give:
Python prints each line at once (`PYTHONUNBUFFERED`), curl shows no progress meter.

A command fails the test when it exits with another status than 0 (or the one its
marker names), when its output does not match, or when it takes more than 30 s (a
server shown without a `background` marker does); every command after it is then
listed as not run, and the failure shows a diff and the last lines of every process
the README started.

Masks in the expected output
============================

- `...` on a line of its own: any number of lines, none included.
- `...` inside a line: any text on that line (`{"detail":[{"type":"too_short",...}]}`).
- A UUID (`a49b76b5-7ef7-471a-aeac-b2e3095cb559`) matches any UUID, and **names** the
  one it matched: further on in the README, the same UUID in an expected output must be
  that same real id. Within one output, the same UUID shown twice must be the same id
  twice. `a49b76b5-...` (the first 8 characters, a dash, `...`) is that same id, shortened.
- An ISO-8601 time (`2026-11-21T10:00:00.000000+00:00`) matches any such time, and so
  does a time of day (`10:00:03`, as `python -m tutorial follow` prints it).
- Ports: see "Ports" below; the README shows the learner's ports, the harness moves
  them, in commands and expected output alike.
- Anything else that differs per machine (a host name): a `vary` marker.
- A **traceback** (an expected output whose first line is `Traceback (most recent call
  last):`) is compared by its first and last lines only. What Python prints between them
  differs between versions (3.13 shows the source line of a `python -c` too), and so may
  the end of the last line: a hint such as `. Did you mean: 'connections'?` (3.12 and
  later) is left out.

Markers
=======

A marker is an HTML comment right before a code block (only blank lines or other
markers between), one per comment; GitHub does not show it. `CMD`, in backticks, is a
command of that block or a part of one, matched in this order:

1. the command that is CMD, whole (`make bench` is not `make bench ARGS=--quick`);
2. else every command whose code contains CMD (its `# comment` does not count, so
   `# the Redis of make services` does not make a command `make services`);
3. else every command whose comment contains it: the way to tell two identical
   commands apart (`# terminal 2, as at first`).

A marker that matches no command, or a command that two markers of the same kind
match (`celery` is also in `uvicorn stage2_celery.main:app`), fails the test: make CMD
longer. A comment may wrap over several lines.

`<!-- docs: exempt: REASON -->`
    Not one command of the block runs (Docker, Windows, a ten-minute run). The reason is
    required and shows in the test report.
`<!-- docs: exempt `CMD`: REASON -->`
    Only those commands are not run.
`<!-- docs: background `CMD`, ready when it prints "TEXT" -->`
`<!-- docs: background `CMD`, ready when localhost:8000/health answers -->`
    A command the learner leaves running in a terminal of its own (services, an API, a
    worker; a trailing `&` is dropped). It is started in the background, the next
    command waits until it is ready, and it is stopped when the README ends, also on
    failure. Lines shown after it must appear, in that order and next to each other, in
    what it prints.
`<!-- docs: stop `CMD` -->`
    Before this block runs, stop the background process started by a command containing
    CMD (Ctrl-C in its terminal). CMD may be in an earlier block.
`<!-- docs: repeat `CMD` until the output matches -->`
    For output that arrives on its own time (a job's status, a log written after the
    response): the command is run again until its output matches, for up to 30 s.
`<!-- docs: `CMD` exits with N -->`
    The command fails on purpose with status N (a command shown to explain an error).
`<!-- docs: output of `CMD` -->`
    The block (any language) is what the background process started by CMD prints: its
    lines must appear, in order and next to each other, in that process's output. This
    is checked after the README's last command, while the processes still run, so the
    block may show output that later commands cause.
`<!-- docs: vary `TEXT`, `OTHER` -->`
    In this block's expected output, TEXT (for example `yourhost`) stands for any run of
    non-space characters.
`<!-- docs: same as `PATH` lines A-B -->`
    The block is a copy of those lines of that file (path from the repository root);
    the test fails when they drift apart. Use this for Python snippets, or run them.

Example (the shape of stage 2): three terminals, a job id reused, a status that changes
on its own time, a worker stopped and started again, a block for Windows only.

    <!-- docs: background `make services`, ready when it prints "Ctrl-C stops all" -->
    <!-- docs: background `celery -A`, ready when it prints "ready." -->
    <!-- docs: background `uvicorn`, ready when localhost:8000/health answers -->
    ```console
    $ make services                                            # terminal 1
    $ .venv/bin/celery -A stage2_celery worker --loglevel=INFO # terminal 2
    $ .venv/bin/uvicorn stage2_celery.main:app --port 8000     # terminal 3
    ```

    <!-- docs: repeat `curl localhost:8000/jobs/$JOB` until the output matches -->
    ```console
    $ JOB=$(curl -s -X POST localhost:8000/jobs/add -H 'Content-Type: application/json' -d '{"x": 2, "y": 3}' \\
        | .venv/bin/python -m tutorial job-id)
    {"job_id":"a49b76b5-7ef7-471a-aeac-b2e3095cb559",...}
    $ curl localhost:8000/jobs/$JOB     # 3 s later
    {"job_id":"a49b76b5-...","status":"succeeded",...,"result":5}
    ```

    <!-- docs: stop `celery -A stage2_celery worker` -->
    ```console
    $ .venv/bin/python -m tutorial redis-cli llen celery      # no worker: the job waits
    ...
    ```

    <!-- docs: exempt: Windows only (`--pool=solo`); the tests run the solo pool on Linux -->
    ```console
    > .venv\\Scripts\\celery -A stage2_celery worker --pool=solo
    ```

Running: `.venv/bin/pytest tests/docs` (all READMEs), `.venv/bin/pytest tests/docs -k stage2`
(one README). Every run that ran a README, the whole suite too, ends with a "README commands"
section: per README, how many commands ran, and each exempt one with its reason
(tests/docs/readme_summary.py).
Deadlines: 30 s per command, 30 s for a background process to be ready, 30 s of
`repeat`, 20 s for an `output of` block.

Ports and settings
==================

`WELL_KNOWN_PORTS` below is the one list of the ports READMEs may show. Each one is
moved to a free port (6379 to a Redis the harness starts for that README), wherever it
appears after `localhost:`, `127.0.0.1:`, `--port `, `--...-port `, `-p ` or `..._PORT=`,
in commands, expected output and markers alike (in commands also where it stands alone,
as in `python -m http.server 8000`); a port the list does not know fails
the test, so no command ever reaches a learner's or the CI machine's real services. The
environment of every command carries the stages' settings for the moved ports
(`REDIS_URL` and rq's `RQ_REDIS_URL`, `SMTP_PORT`, `WEBHOOK_URL`), so a stage started by
a README command finds the services started by another, as it would with the default
ports. For the same reason a plain `redis-cli` is refused (it ignores REDIS_URL, and is
not on every learner's PATH): READMEs show `.venv/bin/python -m tutorial redis-cli ...`.
`COMMAND_REWRITES` adds what a command needs to use them (`make services` gets the
ports as arguments) and keeps `make` from reinstalling anything.

Adding a README: one line in `READMES` in `tests/docs/test_readmes.py`. A new
`stage*/README.md` that is in neither `READMES` nor `NOT_YET` (with a reason) fails the
suite, so stages 3-5 are run from their first version.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tutorial.environment import MAKE_VARIABLES, REDIS_ELSEWHERE
from tutorial.processes import REPO_ROOT, ManagedProcess, free_port, stop_all, wait_for_exit
from tutorial.redis_server import start_redis_server
from tutorial.waiting import WaitTimeout, wait_until


@dataclass(frozen=True)
class WellKnownPort:
    port: int
    used_for: str
    settings: Mapping[str, str] = field(default_factory=dict)  # "{port}" is replaced by the moved port


REDIS_PORT = 6379
WELL_KNOWN_PORTS = (
    # rq's command line takes RQ_REDIS_URL when no --url is given (else it would try localhost:6379).
    WellKnownPort(
        REDIS_PORT,
        "Redis (make services)",
        {"REDIS_URL": "redis://localhost:{port}/0", "RQ_REDIS_URL": "redis://localhost:{port}/0"},
    ),
    WellKnownPort(8025, "the mail catcher (make services)", {"SMTP_PORT": "{port}"}),
    WellKnownPort(8090, "the webhook receiver (make services)", {"WEBHOOK_URL": "http://localhost:{port}/webhook"}),
    WellKnownPort(8000, "a stage's API (uvicorn)"),
    WellKnownPort(8001, "a second API"),
    WellKnownPort(8026, "a port where no mail catcher listens"),
    WellKnownPort(6390, "a port where no Redis listens"),
    WellKnownPort(5555, "Flower (FLOWER_PORT)", {"FLOWER_PORT": "{port}"}),
)

# (pattern, replacement) applied to every command after its ports were moved; {N} is where port N went.
COMMAND_REWRITES = (
    # The services on the moved ports (make services passes ARGS on to `python -m tutorial services`).
    (r"^((?:\w+=\S*\s+)*)make services\b", r'\1make services ARGS="{services_ports}"'),
    (r"(-m tutorial services)\b(?!.*--smtp-port)", r"\1 {services_ports}"),
    # The suite runs inside the installed environment: make must never start a (re)install.
    (r"^((?:\w+=\S*\s+)*)make\b", r"\1make --no-print-directory -o .venv/.installed"),
)
SERVICES_PORTS = "--redis-port {6379} --smtp-port {8025} --webhook-port {8090}"

COMMAND_LANGUAGES = {"console", "sh", "bash", "shell", "shell-session"}
PYTHON_LANGUAGES = {"python", "py"}
# Never copied into the scratch folder, even outside git (the environment is linked, not copied).
NOT_COPIED = {".git", ".venv", ".pytest_cache", ".ruff_cache", "__pycache__"}

COMMAND_TIMEOUT = 30  # seconds a foreground command may take
# After each foreground command: the variables it set (those a fresh shell does not have), for
# the commands after it, as one terminal keeps them. Read-only ones (bash's own) are left out.
SAVE_VARIABLES = """
__status=$?
compgen -v | grep -vxF -f {baseline} | grep -v '^_' | while read -r __name; do declare -p "$__name"; done \\
  | grep -v '^declare -[a-zA-Z]*r' > {state}.new 2>/dev/null
mv {state}.new {state}
exit $__status
"""
READY_TIMEOUT = 30  # seconds a background process may take to be ready
REPEAT_TIMEOUT = 30  # seconds a `repeat` command is retried
OUTPUT_OF_TIMEOUT = 20  # seconds to wait for an `output of` block to appear

TRACEBACK = "Traceback (most recent call last):"
# The guess that Python 3.12 and later add to the last line of a traceback.
TRACEBACK_HINT = re.compile(r"\. Did you mean: [^\n]*\?$", re.MULTILINE)

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
TIMESTAMP = r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?"
CLOCK = r"\d\d:\d\d:\d\d"  # a time of day
PORT_IN_TEXT = re.compile(
    r"(?P<lead>(?:localhost|127\.0\.0\.1|0\.0\.0\.0|\[::1\]):|--(?:[\w-]+-)?port[= ]|(?<!\S)-p |[A-Z_]*PORT=)"
    r"(?P<port>\d{2,5})\b"
)


# redis-cli itself, not `python -m tutorial redis-cli`: it would talk to the real localhost:6379.
BARE_REDIS_CLI = re.compile(r"(?<!tutorial )(?<![\w.-])redis-cli\b")


class ReadmeError(AssertionError):
    """The README's markup is wrong (an unknown marker, a block the harness cannot read)."""


# ---------------------------------------------------------------------------------------------
# Reading a README


@dataclass
class Directive:
    kind: str
    line: int
    command: str | None = None  # the part of a command it applies to
    reason: str = ""
    ready_text: str | None = None
    ready_url: str | None = None
    exit_code: int = 0
    words: tuple[str, ...] = ()
    path: str = ""
    first: int = 0
    last: int = 0
    used: bool = False


DIRECTIVES: dict[str, re.Pattern[str]] = {
    "exempt": re.compile(r"exempt(?: `(?P<command>[^`]+)`)?: (?P<reason>\S.*)"),
    "background": re.compile(
        r'background `(?P<command>[^`]+)`, ready when (?:it prints "(?P<ready_text>[^"]+)"|(?P<ready_url>\S+) answers)'
    ),
    "stop": re.compile(r"stop `(?P<command>[^`]+)`"),
    "repeat": re.compile(r"repeat `(?P<command>[^`]+)` until the output matches"),
    "exits": re.compile(r"`(?P<command>[^`]+)` exits with (?P<exit_code>\d+)"),
    "output of": re.compile(r"output of `(?P<command>[^`]+)`"),
    "vary": re.compile(r"vary (?P<words>`[^`]+`(?:, `[^`]+`)*)"),
    "same as": re.compile(r"same as `(?P<path>[^`]+)` lines (?P<first>\d+)-(?P<last>\d+)"),
}


def parse_directive(text: str, line: int) -> Directive:
    text = " ".join(text.split())
    for kind, pattern in DIRECTIVES.items():
        match = pattern.fullmatch(text)
        if match:
            found = {key: value for key, value in match.groupdict().items() if value is not None}
            directive = Directive(kind, line, command=found.get("command"), reason=found.get("reason", ""))
            directive.ready_text, directive.ready_url = found.get("ready_text"), found.get("ready_url")
            directive.exit_code = int(found.get("exit_code", 0))
            directive.words = tuple(re.findall(r"`([^`]+)`", found.get("words", "")))
            directive.path = found.get("path", "")
            directive.first, directive.last = int(found.get("first", 0)), int(found.get("last", 0))
            return directive
    raise ReadmeError(f"line {line}: unknown docs marker {text!r}; the markers are in tutorial/readmes.py")


@dataclass
class Command:
    text: str  # as the README shows it, without the `$ `
    line: int
    expected: list[str]
    background: Directive | None = None
    exempt: str | None = None
    repeat: bool = False
    exit_code: int = 0

    @property
    def code(self) -> str:
        """The command without a trailing `# comment` (a `#` inside quotes or a word is not one)."""
        quote = None
        for index, char in enumerate(self.text):
            if quote is not None:
                quote = None if char == quote else quote
            elif char in "'\"":
                quote = char
            elif char == "#" and (index == 0 or self.text[index - 1].isspace()):
                return self.text[:index].rstrip()
        return self.text.rstrip()

    def short(self) -> str:
        first = " ".join(self.text.splitlines()[0].split())  # the aligning spaces before a comment
        return first if len(first) <= 90 else first[:87] + "..."


@dataclass
class Block:
    line: int  # of the opening fence
    language: str
    lines: list[str]
    directives: list[Directive]
    commands: list[Command] = field(default_factory=list)
    prose: list[str] = field(default_factory=list)  # the README's text since the block before (for the demo)

    def directive(self, kind: str) -> Directive | None:
        return next((d for d in self.directives if d.kind == kind), None)


FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
MARKER = re.compile(r"<!--\s*docs:(?P<text>.*?)-->", re.DOTALL)


def parse_readme(path: Path) -> list[Block]:
    """The README's code blocks, with their markers and, for command blocks, their commands."""
    lines = path.read_text().splitlines()
    blocks: list[Block] = []
    pending: list[Directive] = []
    prose: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.lstrip().startswith("<!--") and "docs:" in line:
            end = index
            while "-->" not in lines[end]:
                end += 1
                if end == len(lines):
                    raise ReadmeError(f"line {index + 1}: a docs marker that is never closed with -->")
            match = MARKER.search("\n".join(lines[index : end + 1]))
            if not match:
                raise ReadmeError(f"line {index + 1}: write a docs marker as <!-- docs: ... -->")
            pending.append(parse_directive(match["text"], index + 1))
            index = end + 1
            continue
        fence = FENCE.match(line)
        if fence:
            indent, marks = len(fence["indent"]), fence["fence"]
            start = index
            index += 1
            body: list[str] = []
            while index < len(lines) and not lines[index].strip().startswith(marks):
                # A fence indented under a list item: its lines carry that indentation too.
                text = lines[index]
                body.append(text[indent:] if text[:indent].strip() == "" else text.lstrip())
                index += 1
            words = fence["info"].split()
            block = Block(start + 1, words[0].lower() if words else "", body, pending, prose=prose)
            pending, prose = [], []
            blocks.append(_read_block(block))
            index += 1
            continue
        prose.append(line)
        if line.strip() and pending:
            raise ReadmeError(
                f"line {pending[0].line}: a docs marker must come right before its code block "
                f"(only blank lines or other markers between), but line {index + 1} is text"
            )
        index += 1
    if pending:
        raise ReadmeError(f"line {pending[0].line}: a docs marker with no code block after it")
    return blocks


def is_command_block(block: Block) -> bool:
    return block.language in COMMAND_LANGUAGES or any(line.startswith("$ ") for line in block.lines)


NOT_FOR_COMMANDS = ("output of", "same as", "exempt", "stop", "vary")


def _read_block(block: Block) -> Block:
    whole_block_exempt = next((d for d in block.directives if d.kind == "exempt" and d.command is None), None)
    if block.directive("output of") or block.directive("same as") or not is_command_block(block):
        for directive in block.directives:
            if directive.kind not in NOT_FOR_COMMANDS:
                raise ReadmeError(f"line {directive.line}: a `{directive.kind}` marker needs a block of commands")
        if whole_block_exempt is not None:
            block.commands.append(
                Command(f"(the {block.language or 'code'} block)", block.line, [], exempt=whole_block_exempt.reason)
            )
        return block
    current: Command | None = None
    continuing = False
    for offset, line in enumerate(block.lines):
        number = block.line + 1 + offset
        if continuing and current is not None:
            current.text += "\n" + line
            continuing = line.rstrip().endswith("\\")
        elif line.startswith("$ "):
            current = Command(line[2:], number, [])
            block.commands.append(current)
            continuing = line.rstrip().endswith("\\")
        elif current is None:
            if line.strip() and whole_block_exempt is None:
                raise ReadmeError(
                    f"line {number}: a {block.language or 'command'} block shows {line.strip()!r} before any "
                    "command: write each command as `$ command`, or mark the block (tutorial/readmes.py)"
                )
        else:
            current.expected.append(line.rstrip())
    if not block.commands:
        if whole_block_exempt is None:
            raise ReadmeError(
                f"line {block.line}: a {block.language} block with no `$ ` command: write commands as `$ command`, "
                "or mark the block `<!-- docs: exempt: REASON -->` (tutorial/readmes.py)"
            )
        block.commands.append(
            Command(f"(the {block.language} block)", block.line, [], exempt=whole_block_exempt.reason)
        )
        return block
    for command in block.commands:
        while command.expected and not command.expected[-1]:
            command.expected.pop()
    _apply_directives(block)
    return block


def matching(directive: Directive, commands: Sequence[Command]) -> list[Command]:
    """The commands a marker applies to: the one that is CMD, else those whose code, else whose comment has it."""
    wanted = directive.command or ""
    return (
        [command for command in commands if command.code == wanted]
        or [command for command in commands if wanted and wanted in command.code]
        or [command for command in commands if wanted and wanted in command.text]
    )


def _apply_directives(block: Block) -> None:
    chosen: dict[tuple[int, str], Directive] = {}  # (command line, marker kind) -> the marker that chose it
    for directive in block.directives:
        if directive.kind in ("stop", "vary"):
            directive.used = True
            continue
        if directive.kind == "exempt" and directive.command is None:
            for command in block.commands:
                command.exempt = directive.reason
            directive.used = True
            continue
        for command in matching(directive, block.commands):
            directive.used = True
            if (earlier := chosen.setdefault((command.line, directive.kind), directive)) is not directive:
                raise ReadmeError(
                    f"line {command.line}: `{command.short()}` is chosen by two `{directive.kind}` markers, "
                    f"`{earlier.command}` (line {earlier.line}) and `{directive.command}` (line {directive.line}): "
                    "make the marker's command longer"
                )
            if directive.kind == "exempt":
                command.exempt = directive.reason
            elif directive.kind == "background":
                command.background = directive
            elif directive.kind == "repeat":
                command.repeat = True
            elif directive.kind == "exits":
                command.exit_code = directive.exit_code
        if not directive.used:
            raise ReadmeError(
                f"line {directive.line}: the marker's `{directive.command}` is in no command of the block "
                f"at line {block.line}"
            )
    for command in block.commands:
        if BARE_REDIS_CLI.search(command.code) and command.exempt is None:
            raise ReadmeError(
                f"line {command.line}: `{command.short()}`: a plain redis-cli ignores REDIS_URL and is not on every "
                "learner's PATH; show `.venv/bin/python -m tutorial redis-cli ...` instead"
            )
        if command.code.endswith("&") and command.background is None and command.exempt is None:
            raise ReadmeError(
                f"line {command.line}: `{command.short()}` runs in the background: say when it is ready with "
                "<!-- docs: background `...`, ready when ... -->"
            )


# ---------------------------------------------------------------------------------------------
# Ports


class PortMap:
    """The README's well-known ports and the free ports they are moved to for one run."""

    def __init__(self, redis_port: int) -> None:
        self.moved = {known.port: redis_port if known.port == REDIS_PORT else free_port() for known in WELL_KNOWN_PORTS}

    def apply(self, text: str) -> str:
        def move(match: re.Match[str]) -> str:
            port = int(match["port"])
            if port not in self.moved:
                raise ReadmeError(
                    f"port {port} in {text.strip()[:80]!r} is not in WELL_KNOWN_PORTS (tutorial/readmes.py): "
                    "add it there, so the test never uses the real one"
                )
            return f"{match['lead']}{self.moved[port]}"

        return PORT_IN_TEXT.sub(move, text)

    def restore(self, text: str) -> str:
        """The text as it would read with the learner's ports (what the demo shows)."""
        back = {str(moved): str(known) for known, moved in self.moved.items()}
        return re.sub(r"(?<=[:= ])(" + "|".join(back) + r")\b", lambda match: back[match[1]], text)

    def settings(self) -> dict[str, str]:
        values = {}
        for known in WELL_KNOWN_PORTS:
            for name, value in known.settings.items():
                values[name] = value.format(port=self.moved[known.port])
        return values

    def rewrite_command(self, text: str) -> str:
        text = self.apply(text)
        # In a command, a well-known port may also stand alone (`python -m http.server 8000`).
        alone = r"(?<![\w.:/=-])(" + "|".join(str(port) for port in self.moved) + r")(?![\w.:/-])"
        text = re.sub(alone, lambda match: str(self.moved[int(match[1])]), text)
        services_ports = re.sub(r"\{(\d+)\}", lambda match: str(self.moved[int(match[1])]), SERVICES_PORTS)
        for pattern, replacement in COMMAND_REWRITES:
            text = re.sub(pattern, replacement.replace("{services_ports}", services_ports), text, count=1)
        return text


# ---------------------------------------------------------------------------------------------
# Expected output


class IdBook:
    """The UUIDs the README shows, and the real ones they stand for in this run."""

    def __init__(self) -> None:
        self.real: dict[str, str] = {}

    def shown_in_output(self, text: str) -> str:
        """The expected text with the ids already known replaced by the real ones (for a diff)."""
        for shown, real in self.real.items():
            text = text.replace(shown, real).replace(shown[:9] + "...", real[:9] + "...")
        return text


@dataclass
class OutputPattern:
    """Expected output lines as one regular expression, with the masks of the module docstring."""

    regex: re.Pattern[str]
    groups: dict[str, str]  # group name -> the UUID the README shows

    @classmethod
    def compile(cls, expected: Sequence[str], ids: IdBook, vary: Sequence[str] = ()) -> OutputPattern:
        groups: dict[str, str] = {}
        tokens = [rf"(?P<uuid>{UUID})", r"(?P<prefix>[0-9a-f]{8}-)(?=\.\.\.)", rf"(?P<time>{TIMESTAMP})"]
        tokens.append(rf"(?P<clock>{CLOCK})")
        if vary:
            tokens.append("(?P<vary>" + "|".join(re.escape(word) for word in vary) + ")")
        tokens.append(r"(?P<ellipsis>\.\.\.)")
        token = re.compile("|".join(tokens))

        def group_of(shown: str) -> str | None:
            return next((name for name, value in groups.items() if value == shown), None)

        def line_regex(line: str) -> str:
            parts, position = [], 0
            for match in token.finditer(line):
                parts.append(re.escape(line[position : match.start()]))
                position = match.end()
                kind, text = match.lastgroup, match.group(0)
                if kind == "uuid":
                    if text in ids.real:
                        parts.append(re.escape(ids.real[text]))
                    elif (name := group_of(text)) is not None:
                        parts.append(f"(?P={name})")
                    else:
                        name = f"id{len(groups)}"
                        groups[name] = text
                        rest = "[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
                        parts.append(f"(?P<{name}>(?P<{name}_start>[0-9a-f]{{8}})-{rest})")
                elif kind == "prefix":
                    known = next((shown for shown in ids.real if shown.startswith(text)), None)
                    name = next((n for n, shown in groups.items() if shown.startswith(text)), None)
                    if known is not None:
                        parts.append(re.escape(ids.real[known][:9]))
                    elif name is not None:
                        parts.append(f"(?P={name}_start)-")
                    else:
                        parts.append(r"[0-9a-f]{8}-")
                elif kind == "time":
                    parts.append(TIMESTAMP)
                elif kind == "clock":
                    parts.append(CLOCK)
                elif kind == "vary":
                    parts.append(r"\S+")
                else:
                    parts.append(r"[^\n]*?")
            parts.append(re.escape(line[position:]))
            return "".join(parts)

        pieces = []
        for line in expected:
            if line.strip() == "...":
                pieces.append(r"(?:[^\n]*\n)*?")
            else:
                pieces.append(line_regex(line.rstrip()) + r"\n")
        return cls(re.compile("".join(pieces)), groups)

    def match(self, actual: str) -> dict[str, str] | None:
        """The ids this output names (README id -> real id) when it matches, else None."""
        found = self.regex.fullmatch(normalize(actual))
        if found is None:
            return None
        return {shown: found.group(name) for name, shown in self.groups.items()}


def normalize(output: str) -> str:
    """Lines without trailing spaces or carriage returns, no trailing blank lines, each ending in a newline."""
    lines = [line.rstrip() for line in output.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return "".join(line + "\n" for line in lines)


def output_diff(expected: Sequence[str], actual: str) -> str:
    diff = difflib.unified_diff(
        list(expected), normalize(actual).splitlines(), "the README shows", "the command printed", lineterm="", n=2
    )
    return "\n".join(diff)


# ---------------------------------------------------------------------------------------------
# Running a README


@dataclass
class Report:
    """What happened to each command of one README."""

    readme: str
    ran: list[Command] = field(default_factory=list)
    exempt: list[Command] = field(default_factory=list)
    not_run: list[Command] = field(default_factory=list)
    snippets_run: int = 0
    snippets_cited: int = 0
    failure: str | None = None

    def summary(self) -> str:
        text = f"{self.readme}: {len(self.ran)} commands ran, {len(self.exempt)} exempt"
        if self.snippets_run or self.snippets_cited:
            text += f", {self.snippets_run} Python snippets ran, {self.snippets_cited} cited"
        for command in self.exempt:
            text += f"\n  exempt, line {command.line}: `{command.short()}`: {command.exempt}"
        return text

    def failure_message(self) -> str:
        message = f"{self.readme}: {self.failure}"
        if self.not_run:
            listed = "\n".join(f"  line {command.line}: `{command.short()}`" for command in self.not_run)
            message += f"\n\nNot run because of that ({len(self.not_run)}):\n{listed}"
        return message


class CommandFailed(AssertionError):
    pass


class Narrator:
    """What a README run tells as it goes: nothing (the tests); tutorial/demo.py tells it all."""

    def block(self, block: Block) -> None:
        """A block of commands or a Python snippet is about to run."""

    def ran(self, command: Command, output: str) -> None:
        """A command ended as the README shows; ``output`` is what it printed, with the learner's ports."""

    def started(self, command: Command) -> None:
        """A command the learner leaves running in a terminal of its own is ready."""

    def exempt(self, command: Command) -> None:
        """A command the README shows but that is not run here (the reason is ``command.exempt``)."""

    def stopped(self, command: str) -> None:
        """A process the README left running was stopped (Ctrl-C in its terminal): the one ``command`` names."""

    def printed(self, command: Command, output: str) -> None:
        """What a background process printed, once the README's last command ran (for `output of` blocks)."""


class ReadmeRun:
    """One README's commands, run in order against the processes it starts."""

    # Deadlines, in seconds; a test of the harness shortens the one it waits out on purpose.
    command_timeout = COMMAND_TIMEOUT
    ready_timeout = READY_TIMEOUT
    repeat_timeout = REPEAT_TIMEOUT
    output_of_timeout = OUTPUT_OF_TIMEOUT

    def __init__(
        self, readme: Path, work_dir: Path, *, repo_root: Path = REPO_ROOT, narrator: Narrator | None = None
    ) -> None:
        self.readme = readme
        self.narrator = narrator or Narrator()
        self.repo_root = repo_root
        self.work_dir = work_dir
        self.name = str(readme.relative_to(repo_root)) if readme.is_relative_to(repo_root) else readme.name
        self.blocks = parse_readme(readme)
        self.ids = IdBook()
        self.background: list[tuple[Command, ManagedProcess]] = []
        self.output_of_checks: list[tuple[Block, ManagedProcess]] = []
        self.shell = shutil.which("bash") or "/bin/sh"
        self.count = 0

    def commands(self) -> list[Command]:
        return [command for block in self.blocks for command in block.commands]

    def run(self) -> Report:
        report = Report(self.name)
        pending = self.commands()
        if literal := [command for command in pending if re.search(UUID, command.text)]:
            lines = ", ".join(f"line {command.line}: `{command.short()}`" for command in literal)
            report.failure = (
                f"a command holds a job id ({lines}): a learner who pastes it asks for a job that is not theirs. "
                "Keep the id of the command that made the job in a variable: "
                "JOB=$(curl ... | .venv/bin/python -m tutorial job-id), then localhost:8000/jobs/$JOB"
            )
            report.not_run = [command for command in pending if command.exempt is None]
            report.exempt = [command for command in pending if command.exempt is not None]
            return report
        with contextlib.ExitStack() as stack:
            redis = stack.enter_context(start_redis_server())
            self.ports = PortMap(redis.port)
            self.cwd = copy_checkout(self.repo_root, self.work_dir / "repo")
            self.env = self._environment()
            self._start_shell_state()
            stack.callback(self._stop_background)
            try:
                for block in self.blocks:
                    self._run_block(block, report, pending)
                self._check_output_of_blocks()
            except (CommandFailed, WaitTimeout, ReadmeError) as failure:
                report.failure = str(failure) + self._background_states()
                report.not_run = [command for command in pending if command.exempt is None]
                report.exempt += [command for command in pending if command.exempt is not None]
        return report

    def _environment(self) -> dict[str, str]:
        """The learner's environment, as a terminal shows it, with the stages' settings for the moved ports."""
        # curl prints a progress meter when its output is not a terminal: a learner never sees it.
        (self.work_dir / ".curlrc").write_text("no-progress-meter\n")
        terminal_like = {"PYTHONUNBUFFERED": "1", "CURL_HOME": str(self.work_dir)}
        # A learner's exported result backend would send the README's jobs to their own Redis, and
        # make's variables (under `make demo VENV=...`) would reach a README's `make services`.
        inherited = {name: value for name, value in os.environ.items() if name not in REDIS_ELSEWHERE + MAKE_VARIABLES}
        return {**inherited, **self.ports.settings(), **terminal_like}

    def _run_block(self, block: Block, report: Report, pending: list[Command]) -> None:
        if block.commands:
            self.narrator.block(block)
        for directive in block.directives:
            if directive.kind == "stop":
                self._find_background(directive).stop()
                self.narrator.stopped(directive.command or "")
        if (output_of := block.directive("output of")) is not None:
            self.output_of_checks.append((block, self._find_background(output_of)))
            return
        if (same_as := block.directive("same as")) is not None:
            self._check_same_as(block, same_as)
            report.snippets_cited += 1
            return
        if block.language in PYTHON_LANGUAGES and not block.commands:
            self.narrator.block(block)
            self._run_python(block)
            report.snippets_run += 1
            return
        vary = [word for d in block.directives if d.kind == "vary" for word in d.words]
        for command in block.commands:
            pending.remove(command)  # from here on it is either run, exempt or the one that failed
            if command.exempt is not None:
                report.exempt.append(command)
                self.narrator.exempt(command)
            elif command.background is not None:
                self._start_background(command, vary)
                report.ran.append(command)
                self.narrator.started(command)
            else:
                output = self._run_foreground(command, vary)
                report.ran.append(command)
                self.narrator.ran(command, self.ports.restore(output))

    def _shell_text(self, command: Command) -> str:
        return self.ports.rewrite_command(command.text)

    def _start_shell_state(self) -> None:
        """The variables a fresh shell has (never saved), and an empty file of the README's own."""
        self.shell_state = self.work_dir / "shell-variables.sh"
        self.shell_state.write_text("")
        self.shell_baseline = self.work_dir / "shell-baseline.txt"
        fresh = subprocess.run(
            [self.shell, "-c", "compgen -v"], env=self.env, capture_output=True, text=True, check=True, timeout=30
        )
        self.shell_baseline.write_text(fresh.stdout)

    def _with_shell_state(self, text: str, *, save: bool) -> str:
        state = shlex.quote(str(self.shell_state))
        script = f". {state}\n{text}"
        if save:
            script += SAVE_VARIABLES.format(state=state, baseline=shlex.quote(str(self.shell_baseline)))
        return script

    def _process(self, command: Command, kind: str) -> ManagedProcess:
        self.count += 1
        word = re.sub(r"\W+", "-", command.text.split()[0].split("/")[-1]).strip("-") or "command"
        return ManagedProcess(
            f"{self.count:02d}-{kind}-{word}-line{command.line}",
            [self.shell, "-c", self._with_shell_state(self._shell_text(command), save=sets_variables(command, kind))],
            env=self.env,
            cwd=self.cwd,
            log_dir=self.work_dir / "logs",
        )

    def _run_foreground(self, command: Command, vary: Sequence[str]) -> str:
        """Run the command (again, for `repeat`) until it prints what the README shows; what it printed."""
        expected = [self.ports.apply(line) for line in command.expected]
        traceback = len(expected) > 1 and expected[0] == TRACEBACK
        if traceback:  # by its first and last lines (see "Masks" above)
            expected = [TRACEBACK, "...", expected[-1]]
        pattern = OutputPattern.compile(expected, self.ids, vary) if expected else None
        last: dict[str, str] = {}

        def attempt() -> tuple[dict[str, str]] | None:
            process = self._process(command, "run")
            try:
                process.start()
                try:
                    status = wait_for_exit(process, timeout=self.command_timeout)
                except WaitTimeout as timeout:
                    raise CommandFailed(f"line {command.line}: `{command.short()}` did not finish: {timeout}") from None
            finally:
                process.stop()
            output = process.output()
            last.update(output=output, status=str(status))
            if status != command.exit_code:
                return None
            if pattern is None:
                return ({},)
            found = pattern.match(TRACEBACK_HINT.sub("", output) if traceback else output)
            return None if found is None else (found,)

        def explain() -> str:
            status = int(last.get("status", "0"))
            where = f"line {command.line}: `{command.short()}`"
            if command.repeat:
                where += f" (repeated for {self.repeat_timeout:g}s)"
            if status != command.exit_code:
                return f"{where} exited with {status}, not {command.exit_code}; it printed:\n{last.get('output', '')}"
            shown = [self.ids.shown_in_output(line) for line in expected]
            return f"{where} printed something else than the README shows:\n{output_diff(shown, last['output'])}"

        if command.repeat:
            try:
                found = wait_until(attempt, timeout=self.repeat_timeout, what=f"line {command.line}", interval=0.25)
            except WaitTimeout:
                raise CommandFailed(explain()) from None
        else:
            found = attempt()
            if found is None:
                raise CommandFailed(explain())
        self.ids.real.update(found[0])
        return last["output"]

    def _start_background(self, command: Command, vary: Sequence[str]) -> None:
        directive = command.background
        assert directive is not None
        if command.code.endswith("&"):
            command = Command(command.code[:-1].rstrip(), command.line, command.expected)
        process = self._process(command, "background")
        self.background.append((command, process))
        process.start()
        try:
            if directive.ready_text is not None:
                process.wait_for_output(self.ports.apply(directive.ready_text), timeout=self.ready_timeout)
            else:
                url = self.ports.apply(directive.ready_url or "")
                process.wait_for_http(url if "://" in url else f"http://{url}", timeout=self.ready_timeout)
        except WaitTimeout as timeout:
            raise CommandFailed(f"line {command.line}: `{command.short()}` never got ready: {timeout}") from None
        if command.expected:
            self._wait_for_lines(process, command.expected, vary, f"line {command.line}: `{command.short()}`")

    def _find_background(self, directive: Directive) -> ManagedProcess:
        for command, process in reversed(self.background):
            if matching(directive, [command]):
                return process
        raise ReadmeError(
            f"line {directive.line}: no command started in the background before it contains `{directive.command}`"
        )

    def _wait_for_lines(self, process: ManagedProcess, lines: Sequence[str], vary: Sequence[str], what: str) -> None:
        expected = ["...", *(self.ports.apply(line) for line in lines), "..."]
        pattern = OutputPattern.compile(expected, self.ids, vary)

        def printed() -> tuple[dict[str, str]] | None:
            found = pattern.match(process.output())
            return None if found is None else (found,)  # a match that names no id is still a match

        try:
            found = wait_until(printed, timeout=self.output_of_timeout, what=f"{what} to print its lines")
        except WaitTimeout:
            shown = [self.ids.shown_in_output(line) for line in expected]
            raise CommandFailed(
                f"{what} never printed the lines the README shows (in order, next to each other):\n"
                f"{output_diff(shown, process.output())}"
            ) from None
        self.ids.real.update(found[0])

    def _check_output_of_blocks(self) -> None:
        for block, process in self.output_of_checks:
            vary = [word for d in block.directives if d.kind == "vary" for word in d.words]
            what = f"line {block.line}: the output of `{block.directive('output of').command}`"  # type: ignore[union-attr]
            self._wait_for_lines(process, block.lines, vary, what)
        for command, process in self.background:
            if any(checked is process for _, checked in self.output_of_checks):
                self.narrator.printed(command, self.ports.restore(process.output()))

    def _check_same_as(self, block: Block, directive: Directive) -> None:
        source = (self.repo_root / directive.path).read_text().splitlines()[directive.first - 1 : directive.last]
        shown = textwrap.dedent("\n".join(block.lines)).rstrip().splitlines()
        cited = textwrap.dedent("\n".join(source)).rstrip().splitlines()
        if shown != cited:
            diff = "\n".join(difflib.unified_diff(shown, cited, "the README shows", directive.path, lineterm=""))
            raise CommandFailed(
                f"line {block.line}: the block differs from {directive.path} lines "
                f"{directive.first}-{directive.last}:\n{diff}"
            )

    def _run_python(self, block: Block) -> None:
        script = self.work_dir / f"snippet-line{block.line}.py"
        script.write_text("\n".join(block.lines) + "\n")
        command = Command(f"{sys.executable} {script}", block.line, [])
        process = ManagedProcess(
            f"snippet-line{block.line}", [sys.executable, str(script)], env=self.env, cwd=self.cwd,
            log_dir=self.work_dir / "logs",
        )  # fmt: skip
        with process:
            status = wait_for_exit(process, timeout=self.command_timeout)
        if status != 0:
            raise CommandFailed(
                f"line {block.line}: the Python block exited with {status} ({command.short()}); it printed:\n"
                f"{process.output()}"
            )

    def _background_states(self) -> str:
        if not self.background:
            return ""
        states = "\n\n".join(process.describe() for _, process in self.background)
        return f"\n\nThe processes the README started:\n{states}"

    def _stop_background(self) -> None:
        stop_all(process for _, process in reversed(self.background))


def sets_variables(command: Command, kind: str) -> bool:
    """Could this command set a variable for the next ones? (Saving them costs some 25 ms a command.)"""
    return kind == "run" and bool(re.search(r"(^|[\s;&|(])([A-Za-z_]\w*=|export\b|read\b|declare\b)", command.code))


def copy_checkout(repo_root: Path, copy: Path) -> Path:
    """A copy of the checkout's files as git would commit them, where the commands may write.

    A copy, not symlinks: a stage that writes beside its own code (``Path(__file__).resolve()``)
    writes into the copy. What git ignores (an old ``audit.log``, caches) is left out, so a
    learner's own runs do not show up in the output. ``.venv`` points at the running environment.
    """
    try:
        listed = subprocess.run(
            ["git", "-C", str(repo_root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            capture_output=True, check=True, timeout=30,
        ).stdout.decode().split("\0")  # fmt: skip
    except (OSError, subprocess.SubprocessError):  # not a git checkout (a downloaded zip): copy everything
        listed = [str(path.relative_to(repo_root)) for path in repo_root.rglob("*") if path.is_file()]
    for name in listed:
        source = repo_root / name
        if not name or not source.is_file() or NOT_COPIED.intersection(Path(name).parts):
            continue
        target = copy / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    (copy / ".venv").symlink_to(Path(sys.prefix))
    return copy


def run_readme(
    readme: Path, work_dir: Path, *, repo_root: Path = REPO_ROOT, narrator: Narrator | None = None
) -> Report:
    return ReadmeRun(readme, work_dir, repo_root=repo_root, narrator=narrator).run()
