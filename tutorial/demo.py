"""`make demo`: each stage told by its own README, run as a learner runs it, then everything is stopped.

The demo is not a second script of the course. For each stage it runs the commands of the
stage's README in order, exactly as the suite checks them (tutorial/readmes.py): in a
scratch copy of the checkout, with a Redis, ports and services of its own, the processes a
learner leaves "in terminal 2" in the background. It shows the text that leads into each
block of commands, each command as the README shows it, and what it printed.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import textwrap
from pathlib import Path

from tutorial.processes import REPO_ROOT
from tutorial.readmes import Block, Command, Narrator, run_readme
from tutorial.redis_server import RedisUnavailable
from tutorial.stopping import print_error, stop_cleanly_on_signals


def stage_readmes() -> dict[int, Path]:
    """Stage number -> its README: every `stageN_*/README.md` of the checkout."""
    found = {}
    for readme in sorted(REPO_ROOT.glob("stage[0-9]_*/README.md")):
        found[int(readme.parent.name[len("stage")])] = readme
    return found


def lead_in(prose: list[str]) -> list[str]:
    """The last heading in the text before a block, and the paragraph right before the block."""
    headings = [line for line in prose if line.startswith("#")][-1:]
    paragraphs = "\n".join(line for line in prose if not line.startswith("#")).strip().split("\n\n")
    last = paragraphs[-1].strip() if paragraphs else ""
    return [*headings, *([last] if last else [])]


class TellingNarrator(Narrator):
    """Prints the README's own words, each command, and what it printed."""

    def block(self, block: Block) -> None:
        for text in lead_in(block.prose):
            print(f"\n{text}" if text.startswith("#") else textwrap.indent(text, "  "), flush=True)
        print(flush=True)

    def ran(self, command: Command, output: str) -> None:
        print(f"$ {command.text}", flush=True)
        if output.strip():
            print(output.rstrip(), flush=True)

    def started(self, command: Command) -> None:
        print(f"$ {command.text}\n  (ready, and left running as in a terminal of its own)", flush=True)

    def exempt(self, command: Command) -> None:
        print(f"$ {command.text}\n  (not run in the demo: {command.exempt})", flush=True)

    def stopped(self, command: str) -> None:
        print(f"  (Ctrl-C in the terminal of `{command}`: stopped)", flush=True)

    def printed(self, command: Command, output: str) -> None:
        print(f"\nMeanwhile, in the terminal of `{command.short()}`:\n{textwrap.indent(output.rstrip(), '  ')}")


def run_demo(stages: list[int] | None = None) -> int:
    restore_signals = stop_cleanly_on_signals()
    try:
        return _run_demo(stages)
    finally:
        restore_signals()


def _run_demo(stages: list[int] | None) -> int:
    readmes = stage_readmes()
    chosen = [number for number in sorted(readmes) if not stages or number in stages]
    if not chosen:
        print_error(f"No stage among {stages}; the stages are {sorted(readmes)}")
        return 2
    work_dir = Path(tempfile.mkdtemp(prefix="tutorial-demo-"))
    try:
        for number in chosen:
            readme = readmes[number]
            title = f"Stage {number}: {readme.parent.name}/{readme.name}, every command run as you would run it"
            print(f"\n{'=' * 78}\n{title}\n{'=' * 78}", flush=True)
            report = run_readme(readme, work_dir / readme.parent.name, narrator=TellingNarrator())
            if report.failure is not None:
                print_error(f"The demo stopped in stage {number}: {report.failure_message()}")
                print_error("Everything it started has been stopped. `make doctor` checks this machine.")
                return 1
    except KeyboardInterrupt:
        print_error("Interrupted: everything the demo started has been stopped.")
        return 130
    except RedisUnavailable as error:
        print_error(f"The demo runs each stage on a Redis of its own, and could not start one: {error}")
        print_error("Everything it started has been stopped. `make doctor` says how to get a redis-server.")
        return 1
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    print("\nEverything the demo started has been stopped. Next: make test", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run_demo())
