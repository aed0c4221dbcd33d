"""What happens to the waiting jobs when Redis itself dies, or fills up.

Redis is the broker: a job that was accepted (202) and not yet taken by a worker exists
only there. These tests start a Redis of their own, queue jobs with no worker running,
and `kill -9` that Redis: with the append-only file (AOF, `appendfsync everysec`) every
job comes back and runs; without it (`make services`' Redis) every one is gone. And a
full Redis that may evict keys deletes jobs too: the workers of stages 3-5 say so at start.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
import redis

from tests.celery_stage import QUEUE, CeleryStage
from tests.job_api import enqueue, wait_for_status
from tests.procfile import procfile_starter
from tutorial.processes import ManagedProcess
from tutorial.redis_server import RedisService, start_redis_server
from tutorial.waiting import wait_until

STAGE = "stage3_retries"
JOBS = 20
AOF_EVERYSEC = ("--appendonly", "yes", "--appendfsync", "everysec")


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as stack:
        yield stack


def written_to_the_aof(url: str) -> bool:
    """True once every write Redis has answered is in its append-only file (the OS has it).

    Redis writes the AOF before it answers, unless a slow disk makes it postpone the write
    (up to 2 s): then the write waits in `aof_buffer_length`. A `kill -9` of Redis loses
    nothing the OS has; only an OS crash or a power cut can lose what was not yet fsynced
    (everysec: about the last second). Redis 6.2 and 7.0 show no "last fsync" to wait for.
    """
    with redis.Redis.from_url(url) as client:
        info = client.info("persistence")
    return info["aof_enabled"] == 1 and info["aof_buffer_length"] == 0 and info["aof_current_size"] > 0


def queue_jobs_then_kill_redis(
    stack: ExitStack, start_api: Callable, stage_env: dict[str, str], data_dir: Path, server_args: tuple[str, ...]
) -> tuple[RedisService, httpx.Client, list[tuple[str, int]]]:
    """JOBS `add` jobs queued with no worker, Redis killed with SIGKILL and started again on its folder and port.

    Returns the restarted Redis, a client of the API (still the same process) and each
    job's status URL with the result it should have.
    """
    data_dir.mkdir()
    broker = stack.enter_context(start_redis_server(extra_args=server_args, data_dir=data_dir))
    api = start_api(f"{STAGE}.main:app", **{**stage_env, "REDIS_URL": broker.url})
    client = stack.enter_context(httpx.Client(base_url=api.base_url, timeout=10))
    jobs = [(enqueue(client, "/jobs/add", {"x": number, "y": 1}), number + 1) for number in range(JOBS)]
    with redis.Redis.from_url(broker.url) as before:
        assert before.llen(QUEUE) == JOBS
    if "--appendonly" in server_args:
        wait_until(lambda: written_to_the_aof(broker.url), timeout=10, what="the jobs to be in the AOF")

    assert broker.process is not None
    broker.process.kill()  # SIGKILL: no shutdown, no last save
    restarted = stack.enter_context(
        start_redis_server(broker.port, extra_args=server_args, data_dir=data_dir)
    )  # the same port and folder, as a restarted container or service would have
    return restarted, client, jobs


def test_jobs_waiting_in_a_redis_with_aof_everysec_survive_its_kill_9_and_all_succeed(
    stack: ExitStack, start_api: Callable, stage_env: dict[str, str], tmp_path: Path
) -> None:
    broker, client, jobs = queue_jobs_then_kill_redis(stack, start_api, stage_env, tmp_path / "redis", AOF_EVERYSEC)
    with redis.Redis.from_url(broker.url) as after:
        assert after.llen(QUEUE) == JOBS, "every waiting job is back in the queue"

    start = stack.enter_context(procfile_starter(STAGE, {**stage_env, "REDIS_URL": broker.url}, tmp_path))
    start("worker", " ready.")
    for status_url, result in jobs:
        assert wait_for_status(client, status_url, "succeeded", timeout=30)["result"] == result


def test_without_aof_a_kill_9_of_redis_forgets_every_waiting_job_and_their_ids_answer_404(
    stack: ExitStack, start_api: Callable, stage_env: dict[str, str], tmp_path: Path
) -> None:
    # `make services`' Redis: no snapshot, no AOF (the defaults of start_redis_server).
    broker, client, jobs = queue_jobs_then_kill_redis(stack, start_api, stage_env, tmp_path / "redis", ())
    with redis.Redis.from_url(broker.url) as after:
        assert after.llen(QUEUE) == 0

    answers = [client.get(status_url).status_code for status_url, _ in jobs]
    assert answers == [404] * JOBS


# The Celery worker of each stage that has this lesson, as its Procfile starts it.
WORKERS = [("stage3_retries", "worker"), ("stage4_rq_dramatiq", "celery"), ("stage5_monitoring", "worker_emails")]
EVICTION_WARNING = "set maxmemory-policy noeviction"


def started_worker(stage: str, line: str, redis_url: str, stage_env: dict[str, str], log_dir: Path) -> ManagedProcess:
    with procfile_starter(stage, {**stage_env, "REDIS_URL": redis_url}, log_dir) as start:
        return start(line, " ready.")  # the check runs before the worker says it is ready; stopped on leaving


@pytest.mark.parametrize(("stage", "line"), WORKERS)
def test_a_worker_warns_at_start_when_its_redis_may_evict_jobs(
    stage: str, line: str, stage_env: dict[str, str], tmp_path: Path
) -> None:
    with start_redis_server(extra_args=("--maxmemory", "100mb", "--maxmemory-policy", "allkeys-lru")) as evicting:
        worker = started_worker(stage, line, evicting.url, stage_env, tmp_path)

    assert "Redis has maxmemory-policy allkeys-lru" in worker.output()
    assert EVICTION_WARNING in worker.output()


def test_a_worker_on_a_redis_that_never_evicts_says_nothing_about_it(
    stage: CeleryStage, private_redis: RedisService, caplog: pytest.LogCaptureFixture
) -> None:
    with redis.Redis.from_url(private_redis.url) as client:
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}  # Redis's default
    # The check a worker runs when it is ready (the test above shows it runs there), called here.
    check = importlib.import_module(f"{STAGE}.celery_app").warn_if_redis_may_evict_jobs

    with caplog.at_level(logging.INFO, logger=f"{STAGE}.celery_app"):
        check()

    assert caplog.records == []


def test_a_worker_on_a_redis_that_refuses_config_starts_and_says_it_could_not_check(
    stage_env: dict[str, str], tmp_path: Path
) -> None:
    with start_redis_server() as managed:
        with redis.Redis.from_url(managed.url) as client:  # as a managed Redis: CONFIG is not for its users
            client.execute_command("ACL", "SETUSER", "default", "-config")
        worker = started_worker(STAGE, "worker", managed.url, stage_env, tmp_path)

    assert "Could not check the maxmemory-policy of Redis" in worker.output()
    assert EVICTION_WARNING not in worker.output()
