"""The demo tour: one chapter per finished stage, narrated in plain words.

Each chapter is a module of this package with a ``run(tour)`` function. The Tour
owns every service and process a chapter starts, and stops them all when the
tour ends: normally, on failure, and on Ctrl-C.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import textwrap
from contextlib import ExitStack
from pathlib import Path

from tutorial.mail import SmtpSink
from tutorial.processes import ManagedProcess, UvicornServer, python_command
from tutorial.redis_server import RedisService, resolve_redis
from tutorial.webhooks import WebhookReceiver


class Tour:
    """What a chapter can use: narration, the local services, and started processes."""

    def __init__(self, stack: ExitStack) -> None:
        self.stack = stack
        self.work_dir = Path(tempfile.mkdtemp(prefix="tutorial-demo-"))
        # Removed last, after every process that writes its log there has stopped.
        stack.callback(shutil.rmtree, self.work_dir, ignore_errors=True)
        self.smtp = stack.enter_context(SmtpSink())
        self.webhooks = stack.enter_context(WebhookReceiver())
        self._redis: RedisService | None = None

    # Narration -------------------------------------------------------------
    def chapter(self, title: str) -> None:
        print(f"\n{'=' * 72}\n{title}\n{'=' * 72}", flush=True)

    def step(self, text: str) -> None:
        print(f"\n-> {text}", flush=True)

    def say(self, text: str) -> None:
        print(textwrap.indent(textwrap.fill(text, 76), "   "), flush=True)

    def show(self, label: str, value: object) -> None:
        print(f"   {label}: {value}", flush=True)

    # Services --------------------------------------------------------------
    @property
    def redis(self) -> RedisService:
        """The Redis of the tour, found or started on first use (see tutorial.redis_server)."""
        if self._redis is None:
            self._redis = self.stack.enter_context(resolve_redis())
            self.show("Redis", f"{self._redis.url} ({self._redis.source})")
        return self._redis

    @property
    def audit_log(self) -> Path:
        return self.work_dir / "audit.log"

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for a stage process: the tour's services, plus ``extra``."""
        env = dict(os.environ)
        env.update(
            SMTP_HOST="127.0.0.1",
            SMTP_PORT=str(self.smtp.port),
            WEBHOOK_URL=self.webhooks.url,
            AUDIT_LOG_PATH=str(self.audit_log),
        )
        if self._redis is not None:
            env["REDIS_URL"] = self._redis.url
        env.update(extra)
        return env

    def start_api(self, app: str, **extra_env: str) -> str:
        """Start uvicorn serving ``app`` and return its base URL once it answers."""
        name = app.split(".")[0] + "-api"
        server = UvicornServer(app, env=self.env(**extra_env), log_dir=self.work_dir, name=name, ready_path="/docs")
        self.stack.enter_context(server)
        self.show("API", f"{server.base_url} (uvicorn {app})")
        return server.base_url

    def start_process(self, name: str, *args: str, ready_text: str | None = None, **extra_env: str) -> ManagedProcess:
        """Start ``python -m args...`` (e.g. a worker) and wait for ``ready_text`` in its output."""
        process = ManagedProcess(name, python_command(*args), env=self.env(**extra_env), log_dir=self.work_dir)
        self.stack.enter_context(process)
        if ready_text:
            process.wait_for_output(ready_text, timeout=30)
        return process


def print_error(text: str) -> None:
    print(f"\n!! {text}", file=sys.stderr, flush=True)
