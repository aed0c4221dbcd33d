"""Start a stage's processes from its Procfile, as `honcho -f <stage>/Procfile start` would.

The tests run exactly the lines a learner runs, each in a shell (honcho runs them so
too) with this virtual environment's bin folder first on PATH (as after
`. .venv/bin/activate`), in its own process group, always stopped at the end.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from tutorial.mail import SmtpSink
from tutorial.processes import REPO_ROOT, ManagedProcess, ProcessGroup
from tutorial.webhooks import WebhookReceiver

VENV_BIN = str(Path(sys.executable).parent)


def procfile_lines(stage: str) -> dict[str, str]:
    """{process type: command} of ``<stage>/Procfile``."""
    lines = {}
    for line in (REPO_ROOT / stage / "Procfile").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, command = line.partition(":")
            lines[name.strip()] = command.strip()
    return lines


def procfile_env(env: Mapping[str, str]) -> dict[str, str]:
    """The environment of a process started from a Procfile: ``env``, with the venv first on PATH."""
    return {**os.environ, **env, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def procfile_process(stage: str, process_type: str, env: Mapping[str, str], log_dir: Path) -> ManagedProcess:
    """The Procfile line ``process_type`` of ``stage``, ready to start (``with ...:``)."""
    command = procfile_lines(stage)[process_type]
    name = f"{stage}-{process_type}"
    return ManagedProcess(name, ["bash", "-c", f"exec {command}"], env=procfile_env(env), log_dir=log_dir)


@contextmanager
def procfile_starter(stage: str, env: Mapping[str, str], log_dir: Path) -> Iterator[Callable[..., ManagedProcess]]:
    """``start(process_type, ready_text=None, **more_env)`` for one test; what it started stops at the end.

    The processes are stopped together (a ProcessGroup): a worker takes about a second to
    stop, so one after the other would add up.
    """
    with ProcessGroup() as started:

        def start(process_type: str, ready_text: str | None = None, **more_env: str) -> ManagedProcess:
            process = procfile_process(stage, process_type, {**env, **more_env}, log_dir)
            process.name = f"{process_type}-{len(list(log_dir.glob('*.log')))}"
            started.start(process)
            if ready_text:
                process.wait_for_output(ready_text, timeout=30)
            return process

        yield start


def services_env(smtp_sink: SmtpSink, webhook_receiver: WebhookReceiver) -> dict[str, str]:
    """The settings that point a stage's processes at a test's own mail server and webhook receiver."""
    return {"SMTP_HOST": smtp_sink.host, "SMTP_PORT": str(smtp_sink.port), "WEBHOOK_URL": webhook_receiver.url}
