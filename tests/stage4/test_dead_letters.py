"""Dead letters, in each library's own place: an empty list before any job failed, only this
stage's letters, and a replay that cannot run keeps its letter.

No worker is needed: the API runs on a database of its own, emptied after each test, and the
letters are written where the stage (Celery) or the library (Dramatiq's broker) keeps them.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import dramatiq
import httpx
import pytest
import redis

from tests.conftest import RunningApi
from tests.stage3.test_dead_letters import a_letter
from tests.stage4.conftest import LIBRARIES, STAGE
from tutorial.processes import UvicornServer, free_port
from tutorial.redis_server import RedisService, with_database

# No stage's database, and no other test's: nothing has been written there before this module.
FRESH_DB = 14
# The stages that keep Celery dead letters, all in database 0 by default: a learner runs them one after the other.
OTHER_CELERY_STAGES = ("stage3_retries", "stage5_monitoring")
CANNOT_RUN = (
    "Dead letter {job_id} is a job of {task}, a task this app cannot run: the letter is from another app, "
    "or the task was renamed since. It is kept: replay it where that task is, or delete it."
)


@pytest.fixture(scope="module")
def fresh_url(private_redis: RedisService) -> str:
    return with_database(private_redis.url, FRESH_DB)


@pytest.fixture(scope="module")
def fresh_api(stage_env: dict[str, str], fresh_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = {**os.environ, **stage_env, "REDIS_URL": fresh_url}
    with UvicornServer(f"{STAGE}.main:app", env=env, log_dir=tmp_path_factory.mktemp("fresh-db")) as api:
        yield api.base_url


@pytest.fixture
def client(fresh_api: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fresh_api, timeout=10) as client:
        yield client


@pytest.fixture
def fresh_redis(fresh_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(fresh_url) as client:
        yield client
        client.flushdb()


def keep_celery_letter(client: redis.Redis, prefix: str, letter: dict) -> None:
    client.set(f"{prefix}dead-letter:{letter['job_id']}", json.dumps(letter))
    client.zadd(f"{prefix}dead-letters", {letter["job_id"]: datetime.now(UTC).timestamp()})


def keep_dramatiq_letter(client: redis.Redis, actor: str, args: list) -> str:
    """A message dead in Dramatiq's queue, and its state as the stage's JobStates middleware records it."""
    redis_id = str(uuid.uuid4())  # the broker's own id of the message
    message = dramatiq.Message(
        queue_name="default", actor_name=actor, args=tuple(args), kwargs={}, options={"redis_message_id": redis_id}
    )
    # Scored in milliseconds, as the broker does: its maintenance drops dead messages older than 7 days.
    client.zadd("dramatiq:default.XQ", {redis_id: datetime.now(UTC).timestamp() * 1000})
    client.hset("dramatiq:default.XQ.msgs", redis_id, message.encode())
    state = {"status": "failed", "actor": actor, "args": args, "error": "WebhookFailed: ...", "attempts": 3}
    state |= {"failed_at": datetime.now(UTC).isoformat(timespec="seconds"), "redis_id": redis_id}
    client.hset(f"dramatiq-job:{message.message_id}", mapping={name: json.dumps(v) for name, v in state.items()})
    return message.message_id


def listed_job_ids(client: httpx.Client, library: str) -> list[str]:
    response = client.get(f"/{library}/dead-letters")
    assert response.status_code == 200, response.text
    return [letter["job_id"] for letter in response.json()]


@pytest.mark.parametrize("library", LIBRARIES)
def test_no_dead_letter_yet_is_an_empty_list(client: httpx.Client, fresh_redis: redis.Redis, library: str) -> None:
    response = client.get(f"/{library}/dead-letters")

    assert (response.status_code, response.json()) == (200, [])


def test_the_dead_letters_of_the_other_stages_on_the_same_redis_are_not_listed_replayed_or_deleted_here(
    client: httpx.Client, fresh_redis: redis.Redis
) -> None:
    # Stage 3 as it was (keys without a stage's name), and the other Celery stages as they are.
    theirs = {}
    for prefix in ["", *(f"{name}:" for name in OTHER_CELERY_STAGES)]:
        letter = a_letter("stage3_retries.tasks.generate_report", [[1, 2], True])
        keep_celery_letter(fresh_redis, prefix, letter)
        theirs[letter["job_id"]] = prefix

    for library in LIBRARIES:
        assert listed_job_ids(client, library) == []
        for job_id in theirs:
            assert client.post(f"/{library}/dead-letters/{job_id}/replay").status_code == 404
            assert client.delete(f"/{library}/dead-letters/{job_id}").status_code == 404
    for job_id, prefix in theirs.items():  # still there, for the stage that wrote them
        assert fresh_redis.zscore(f"{prefix}dead-letters", job_id) is not None
        assert fresh_redis.exists(f"{prefix}dead-letter:{job_id}")


def test_a_celery_dead_letter_of_a_task_this_app_does_not_have_is_409_naming_it_and_is_kept(
    client: httpx.Client, fresh_redis: redis.Redis
) -> None:
    letter = a_letter("stage3_retries.tasks.generate_report", [[1, 2], True])  # as in stage 3
    keep_celery_letter(fresh_redis, f"{STAGE}:", letter)

    response = client.post(f"/celery/dead-letters/{letter['job_id']}/replay")

    assert response.status_code == 409
    assert response.json() == {"detail": CANNOT_RUN.format(job_id=letter["job_id"], task=letter["task"])}
    assert listed_job_ids(client, "celery") == [letter["job_id"]]


def test_a_dramatiq_dead_letter_of_an_actor_this_app_does_not_have_is_409_naming_it_and_is_kept(
    client: httpx.Client, fresh_redis: redis.Redis
) -> None:
    job_id = keep_dramatiq_letter(fresh_redis, "deliver_webhook_v0", [{"type": "order.paid"}])  # renamed since

    response = client.post(f"/dramatiq/dead-letters/{job_id}/replay")

    assert response.status_code == 409
    assert response.json() == {"detail": CANNOT_RUN.format(job_id=job_id, task="deliver_webhook_v0")}
    assert listed_job_ids(client, "dramatiq") == [job_id]


def test_a_celery_replay_that_the_broker_refuses_is_503_and_keeps_the_letter(
    stage_env: dict[str, str],
    fresh_url: str,
    fresh_redis: redis.Redis,
    start_api: Callable[..., RunningApi],
    client: httpx.Client,
) -> None:
    # Only Celery's letters can be kept apart from its jobs (RESULT_BACKEND_URL): RQ and Dramatiq keep
    # both in one Redis, so a replay cannot fail there unless Redis fails between two commands.
    letter = a_letter(f"{STAGE}.tasks.add", [2, 3])
    keep_celery_letter(fresh_redis, f"{STAGE}:", letter)
    broker = f"redis://127.0.0.1:{free_port()}/0"
    env = {**stage_env, "REDIS_URL": broker, "RESULT_BACKEND_URL": fresh_url, "REDIS_TIMEOUT_SECONDS": "1.5"}
    api = start_api(f"{STAGE}.main:app", **env)

    with httpx.Client(base_url=api.base_url, timeout=5) as cut_off:
        response = cut_off.post(f"/celery/dead-letters/{letter['job_id']}/replay")

    assert response.status_code == 503
    assert response.json()["detail"].startswith(f"The job queue (Redis at {broker}) is not reachable")
    assert listed_job_ids(client, "celery") == [letter["job_id"]]


def test_an_rq_failed_job_whose_data_is_gone_cannot_be_replayed_and_a_delete_clears_its_id(
    client: httpx.Client, fresh_redis: redis.Redis
) -> None:
    # Its id is still in RQ's FailedJobRegistry, its job hash is gone (evicted under maxmemory, or deleted by hand).
    job_id = str(uuid.uuid4())
    fresh_redis.zadd("rq:failed:default", {job_id: datetime.now(UTC).timestamp() + 3600})  # scored by its expiry

    assert listed_job_ids(client, "rq") == []
    assert client.post(f"/rq/dead-letters/{job_id}/replay").status_code == 404
    assert client.delete(f"/rq/dead-letters/{job_id}").status_code == 204
    assert fresh_redis.zscore("rq:failed:default", job_id) is None
    assert client.delete(f"/rq/dead-letters/{job_id}").status_code == 404
