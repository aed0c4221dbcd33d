"""The README's `kill -9` of a worker, as a learner types it: it kills that worker and its pool, and no other.

The learner's worker runs in a terminal of its own (a shell with job control gives each
command a process group); another stage-3 worker runs on the same machine meanwhile (a
second one of the learner's, another stage's tests). The kill must leave that one alone.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import psutil

from tests.procfile import procfile_starter
from tutorial.processes import REPO_ROOT, ManagedProcess, wait_for_exit
from tutorial.waiting import wait_until

README = REPO_ROOT / "stage3_retries" / "README.md"


def readme_command(*words: str) -> str:
    """The first `$ ` command of the README that has all ``words``, without its `# comment`."""
    for line in README.read_text().splitlines():
        if line.startswith("$ ") and all(word in line for word in words):
            return re.split(r"\s#\s", line[2:])[0].strip()
    raise AssertionError(f"no command with {words} in {README}")


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_the_readmes_kill_command_kills_the_learners_worker_and_its_pool_and_no_other_worker(
    stage_env: dict[str, str], tmp_path: Path
) -> None:
    worker_command = readme_command("celery -A stage3_retries worker", "--pidfile=")
    kill_command = readme_command("kill -9")
    # The learner's checkout: the README's commands run from its root, where .venv is.
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))
    env = {**stage_env, "PYTHONPATH": str(REPO_ROOT)}
    with procfile_starter("stage3_retries", stage_env, tmp_path / "others") as start:
        other = start("worker")  # ready by the time the learner's is (they start together)
        # Terminal 2: `set -m` is what an interactive shell does, a process group per command.
        terminal = ManagedProcess(
            "terminal-2", ["bash", "-c", f"set -m\n{worker_command} > worker.log 2>&1 &\nwait"],
            env=env, cwd=tmp_path, log_dir=tmp_path / "logs",
        )  # fmt: skip
        with terminal:
            other.wait_for_output(" ready.", timeout=30)
            other_pool = [child.pid for child in psutil.Process(other.pid).children(recursive=True)]
            log = tmp_path / "worker.log"
            wait_until(lambda: log.exists() and " ready." in log.read_text(), timeout=30, what="the learner's worker")
            worker = int((tmp_path / "worker.pid").read_text())
            pool = [child.pid for child in psutil.Process(worker).children(recursive=True)]
            assert pool, "a prefork pool"

            with ManagedProcess("terminal-4", ["bash", "-c", kill_command], env=env, cwd=tmp_path,
                                log_dir=tmp_path / "logs") as kill:  # fmt: skip
                assert wait_for_exit(kill, timeout=10) == 0, kill.describe()

            wait_until(lambda: all(gone(pid) for pid in [worker, *pool]), timeout=10, what="the learner's worker gone")
            assert other.is_running()
            assert not any(gone(pid) for pid in other_pool), "the other worker's pool goes on"
