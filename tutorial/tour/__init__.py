"""The demo tour: one chapter per finished stage, narrated in plain words.

Each chapter is a module of this package with a ``run(tour)`` function. The Tour
owns every service and process a chapter starts, and stops them all when the
tour ends: normally, on failure, and on Ctrl-C.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import redis

from tutorial.environment import REDIS_ELSEWHERE
from tutorial.mail import SmtpSink
from tutorial.processes import ManagedProcess, P, ProcessGroup, UvicornServer, python_command
from tutorial.redis_server import (
    RedisService,
    RedisUnavailable,
    database_of,
    find_running_redis,
    ping,
    redacted,
    start_redis_server,
    with_database,
)
from tutorial.webhooks import WebhookReceiver

# The stages' database when REDIS_URL names none (their default URLs end in /0), and the next
# few, left to a learner's own runs: in a Redis it did not start, the tour never takes them.
STAGE_DATABASES = range(6)
# The names of the keys the stages write: job queues, job states and results, the marks of the
# API and of the tasks, dead letters, the workers' notes of their queues. In a Redis it did not
# start, the tour deletes only these.
STAGE_KEYS = re.compile(
    rb"celery|celery-task-meta-.+|_kombu\..+|unacked(_index|_mutex)?|.+\.reply\.celery\.pidbox"
    rb"|(default|emails|reports|integrations)(:\d)?"  # stage 5's queues, one list per priority
    rb"|rq:.+|dramatiq:.+|dramatiq-job:.+|[0-9a-f]{32}"  # RQ; Dramatiq, and its results (an MD5 as name)
    rb"|job-attempts:.+|job-queue:.+|welcome-email-sent:.+|idempotency-key:.+"
    rb"|(stage[0-9]_[a-z_]+:)?(dead-letters|dead-letter:.+)"  # dead letters: named after their stage (bare: older)
    rb"|stage[0-9]_[a-z_]+:workers:.+"  # the queues each worker consumes (Dramatiq's: dramatiq:workers:...)
)


class Tour:
    """What a chapter can use: narration, the local services, and started processes."""

    def __init__(self, stack: ExitStack) -> None:
        self.stack = stack  # the tour's services: stopped when the tour ends
        self.work_dir = Path(tempfile.mkdtemp(prefix="tutorial-demo-"))
        # Removed last, after every process that writes its log there has stopped.
        stack.callback(shutil.rmtree, self.work_dir, ignore_errors=True)
        self._chapter_processes: ProcessGroup | None = None  # a chapter's processes: stopped together when it ends
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
        """The Redis of the tour: one of its own, started on a free port, whenever it can.

        Only when none can be started does it use a running one (REDIS_URL, else
        localhost:6379), kept apart: in a database that is empty when the tour begins and
        that no stage uses by default. When the tour ends (after every process it started
        has stopped), it deletes there the keys its stages write, and no other.
        """
        if self._redis is None:
            try:
                self._redis = self.stack.enter_context(start_redis_server())
            except RedisUnavailable as cannot_start:
                self._redis = self._keep_apart_in(self._running_redis(cannot_start))
            self.show("Redis", f"{redacted(self._redis.url)} ({self._redis.source})")
            if self._redis.started_here:
                self.say("A Redis of the tour's own: none of your data is in it, and it is gone when the tour ends.")
            else:
                database = database_of(self._redis.url)
                self.say(
                    f"This Redis was not started by the tour, so it may hold your data. The tour writes only "
                    f"to database {database}, which is empty now and which no stage uses by default. When "
                    f"the tour ends, it deletes the keys its stages wrote there (job queues, job states, "
                    f"results); no other key, in this database or another, is changed."
                )
        return self._redis

    def _running_redis(self, cannot_start: RedisUnavailable) -> RedisService:
        """REDIS_URL, else the Redis on localhost:6379, for a tour that could not start one of its own."""
        url = os.environ.get("REDIS_URL")
        if url and not ping(url):
            raise RedisUnavailable(
                f"Redis is not reachable at {redacted(url)} (from REDIS_URL), and the tour could not start "
                f"one of its own: {str(cannot_start).rstrip('.')}. Start that Redis, or install a redis-server "
                "(`make doctor` says how)."
            )
        found = find_running_redis()
        if found is None:
            raise cannot_start
        self.say(f"The tour could not start a Redis of its own: {cannot_start}")
        return found

    def _keep_apart_in(self, found: RedisService) -> RedisService:
        """The found Redis at an empty database that no stage uses by default, with its clean-up registered."""
        try:
            database = empty_database_for_the_tour(found.url)
        except redis.RedisError as error:
            raise RedisUnavailable(f"The Redis at {redacted(found.url)} stopped answering: {error}") from None
        if database is None:
            raise RedisUnavailable(
                f"Every database of the Redis at {redacted(found.url)} that no stage uses by default "
                f"({STAGE_DATABASES.stop} and up) holds keys, and the tour does not mix its jobs with your "
                "data: point REDIS_URL at an empty database (redis://host:6379/15), or install a redis-server "
                "(`make doctor` says how) to let the tour start one of its own."
            )
        kept_apart = dataclasses.replace(found, url=with_database(found.url, database))
        self.stack.callback(self._delete_what_the_tour_wrote, kept_apart.url)
        return kept_apart

    def _delete_what_the_tour_wrote(self, url: str) -> None:
        database = database_of(url)
        try:
            with redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5) as client:
                keys = [key for key in client.scan_iter(count=1000) if STAGE_KEYS.fullmatch(key)]
                for start in range(0, len(keys), 1000):
                    client.delete(*keys[start : start + 1000])
                others = client.dbsize()
        except redis.RedisError as error:
            print_error(
                f"Could not delete the tour's keys in database {database} of {redacted(url)}: {error}. "
                f"The keys of the stages there are the tour's: `redis-cli -n {database} --scan` lists them."
            )
            return
        self.show("Redis", f"deleted the {len(keys)} key(s) the tour wrote to database {database}")
        if others:
            self.show("Redis", f"left the {others} other key(s) of database {database}: the tour did not write them")

    @property
    def audit_log(self) -> Path:
        return self.work_dir / "audit.log"

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for a stage process: the tour's services, plus ``extra``."""
        # A learner's RESULT_BACKEND_URL (or Celery's own two) would put results outside the tour's database.
        env = {name: value for name, value in os.environ.items() if name not in REDIS_ELSEWHERE}
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

    @contextmanager
    def chapter_processes(self) -> Iterator[None]:
        """Stop what a chapter started when it ends: a stage's worker must not take the next stage's jobs."""
        with ProcessGroup() as chapter_processes:
            self._chapter_processes = chapter_processes
            try:
                yield
            finally:
                self._chapter_processes = None

    def _own(self, process: P) -> P:
        """Start ``process``; it stops with its chapter, or outside one when the tour ends (before Redis does)."""
        if self._chapter_processes is not None:
            return self._chapter_processes.start(process)
        return self.stack.enter_context(process)

    def start_api(self, app: str, **extra_env: str) -> str:
        """Start uvicorn serving ``app`` and return its base URL once it answers."""
        name = app.split(".")[0] + "-api"
        server = UvicornServer(app, env=self.env(**extra_env), log_dir=self.work_dir, name=name, ready_path="/docs")
        self._own(server)
        self.show("API", f"{server.base_url} (uvicorn {app})")
        return server.base_url

    def start_process(self, name: str, *args: str, ready_text: str | None = None, **extra_env: str) -> ManagedProcess:
        """Start ``python -m args...`` (e.g. a worker) and wait for ``ready_text`` in its output."""
        process = ManagedProcess(name, python_command(*args), env=self.env(**extra_env), log_dir=self.work_dir)
        self._own(process)
        if ready_text:
            process.wait_for_output(ready_text, timeout=30)
        return process


def empty_database_for_the_tour(url: str, timeout: float = 5) -> int | None:
    """The database the URL names if it is empty and no stage's, else the highest such one; None if none is.

    A learner's own data, and a stage run by hand, are most often in database 0, so the
    tour looks from the top, and never takes a database of STAGE_DATABASES.
    """
    named = database_of(url)
    with redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout) as client:
        try:
            count = int(client.config_get("databases").get("databases", 16))
        except redis.ResponseError:  # CONFIG may be refused (a managed Redis): 16 is the default
            count = 16
    candidates = [database for database in (named, *range(count - 1, -1, -1)) if database not in STAGE_DATABASES]
    for database in dict.fromkeys(candidates):
        with redis.Redis.from_url(
            with_database(url, database), socket_timeout=timeout, socket_connect_timeout=timeout
        ) as client:
            try:
                if client.dbsize() == 0:
                    return database
            except redis.ResponseError:  # a database this server does not have
                continue
    return None


def print_error(text: str) -> None:
    print(f"\n!! {text}", file=sys.stderr, flush=True)
