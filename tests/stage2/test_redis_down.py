"""With Redis down, the API says so at once: 503 and what to do, never a hang."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tutorial.processes import UvicornServer, free_port

# The client's timeout is the deadline: the seed's .delay() would still be retrying.
DEADLINE_SECONDS = 10


@dataclass
class ApiWithoutRedis:
    client: httpx.Client
    redis_url: str


@pytest.fixture(scope="module")
def api_without_redis(
    stage2_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiWithoutRedis]:
    """The stage-2 API, started the usual way, with REDIS_URL at a port where nothing listens."""
    dead_redis_url = f"redis://127.0.0.1:{free_port()}/0"
    env = {**os.environ, **stage2_env, "REDIS_URL": dead_redis_url}
    log_dir = tmp_path_factory.mktemp("api-without-redis")
    with (
        UvicornServer("stage2_celery.main:app", env=env, log_dir=log_dir) as api,
        httpx.Client(base_url=api.base_url, timeout=DEADLINE_SECONDS) as client,
    ):
        yield ApiWithoutRedis(client, dead_redis_url)


def test_enqueueing_without_redis_is_503_with_what_to_do(api_without_redis: ApiWithoutRedis) -> None:
    response = api_without_redis.client.post("/jobs/add", json={"x": 2, "y": 3})

    assert response.status_code == 503
    assert response.json() == {
        "detail": f"The job queue (Redis at {api_without_redis.redis_url}) is not reachable: "
        "start it with `make services` or set REDIS_URL."
    }


def test_asking_for_a_job_without_redis_is_503_too(api_without_redis: ApiWithoutRedis) -> None:
    response = api_without_redis.client.get(f"/jobs/{uuid.uuid4()}")

    assert response.status_code == 503
    assert "is not reachable" in response.json()["detail"]
