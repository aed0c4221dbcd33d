"""A forgotten worker is visible, in every library: /health names each library with no worker, and
a job that waits for one says why. Celery's and Dramatiq's workers note in Redis that they run
(workers.py, dramatiq_app.NoteWorker); RQ's are in RQ's own registry of workers.

On a database of this module's own, emptied after each test: the stage's other tests kill workers
(kill -9), whose notes and registry entries stay until they expire."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator

import httpx
import pytest
import redis

from tests.job_api import job_status, wait_for_status
from tests.procfile import procfile_starter
from tests.stage4.conftest import LIBRARIES, READY, STAGE
from tutorial.processes import ManagedProcess, UvicornServer, wait_for_exit
from tutorial.redis_server import RedisService, with_database

OWN_DB = 7
# What the library itself calls a job that waits for a worker.
WAITING = {"celery": "PENDING", "rq": "queued", "dramatiq": "queued"}
# What a queued job says while no worker of its library runs (Celery's words are stage 2's).
NOTES = {
    "celery": "No worker consumes the queue 'celery': the job waits until one starts (the stage's README says how).",
    "rq": "No rq worker consumes the queue 'default': the job waits until one starts (the stage's README says how).",
    "dramatiq": (
        "No dramatiq worker consumes the queue 'default': the job waits until one starts (the stage's README says how)."
    ),
}


@pytest.fixture(scope="module")
def own_env(stage_env: dict[str, str], private_redis: RedisService) -> dict[str, str]:
    return {**stage_env, "REDIS_URL": with_database(private_redis.url, OWN_DB)}


@pytest.fixture
def own_redis(own_env: dict[str, str]) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(own_env["REDIS_URL"]) as client:
        yield client
        client.flushdb()


@pytest.fixture(scope="module")
def own_api(own_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = {**os.environ, **own_env}
    with UvicornServer(f"{STAGE}.main:app", env=env, log_dir=tmp_path_factory.mktemp("own-api")) as api:
        yield api.base_url


@pytest.fixture
def client(own_api: str, own_redis: redis.Redis) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=own_api, timeout=10) as client:
        yield client


@pytest.fixture
def start(own_env: dict[str, str], own_redis: redis.Redis, tmp_path) -> Iterator[Callable[[str], ManagedProcess]]:
    """Start a library's worker from the Procfile, on this module's database (not waiting until it is ready)."""
    with procfile_starter(STAGE, own_env, tmp_path) as start:
        yield start


def post_add(client: httpx.Client, library: str, x: int, y: int) -> str:
    response = client.post(f"/{library}/jobs/add", json={"x": x, "y": y})
    assert response.status_code == 202, response.text
    return response.json()["status_url"]


def test_health_is_degraded_and_names_each_library_while_no_worker_runs(client: httpx.Client) -> None:
    response = client.get("/health")

    assert response.status_code == 200
    assert response.json() == {"status": "degraded", "redis": "ok", "workers": dict.fromkeys(LIBRARIES, 0)}


def test_a_queued_job_notes_only_while_no_worker_of_its_library_is_counted_and_health_counts_from_start_to_clean_stop(
    client: httpx.Client, start: Callable[[str], ManagedProcess]
) -> None:
    forgotten = {library: post_add(client, library, 20, 22) for library in LIBRARIES}
    waiting_for_one = {library: job_status(client, status_url) for library, status_url in forgotten.items()}

    workers = {library: start(library) for library in LIBRARIES}  # the three start side by side
    for library, worker in workers.items():
        worker.wait_for_output(READY[library], timeout=30)
    # Counted as soon as each says it is ready.
    running = client.get("/health").json()
    done = {
        library: wait_for_status(client, status_url, "succeeded", timeout=20)
        for library, status_url in forgotten.items()
    }

    # A frozen worker takes no job, and is still counted (until its note expires): the next jobs wait their turn.
    for worker in workers.values():
        os.killpg(worker.pid, signal.SIGSTOP)
    try:
        next_ones = {library: post_add(client, library, 3, 4) for library in LIBRARIES}
        in_turn = {library: job_status(client, status_url) for library, status_url in next_ones.items()}
    finally:
        for worker in workers.values():
            os.killpg(worker.pid, signal.SIGCONT)
    for status_url in next_ones.values():
        wait_for_status(client, status_url, "succeeded", timeout=20)
    # Ctrl-C in each worker's terminal: SIGINT to its process group, a clean stop.
    for worker in workers.values():
        os.killpg(worker.pid, signal.SIGINT)
    for worker in workers.values():
        wait_for_exit(worker, timeout=20)
    stopped = client.get("/health").json()

    for library, job in waiting_for_one.items():
        assert (job["status"], job["backend_status"], job["note"]) == ("queued", WAITING[library], NOTES[library])
    assert running == {"status": "ok", "redis": "ok", "workers": dict.fromkeys(LIBRARIES, 1)}
    assert {library: job["result"] for library, job in done.items()} == dict.fromkeys(LIBRARIES, 42)
    assert {library: (job["status"], "note" in job) for library, job in in_turn.items()} == dict.fromkeys(
        LIBRARIES, ("queued", False)
    )
    assert stopped == {"status": "degraded", "redis": "ok", "workers": dict.fromkeys(LIBRARIES, 0)}
