"""GET /health tells the truth within about a second: 503 saying why when Redis does not answer
(down, or accepting connections but answering nothing), never a hang. When Redis answers, 200 with
the workers of each queue: test_forgotten_worker.py."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests.conftest import RunningApi
from tests.stage2.test_redis_trouble import closed_url, stalled_redis  # noqa: F401 (a fixture)
from tutorial.redis_server import RedisService

# The API's deadline for /health in these tests (HEALTH_TIMEOUT_SECONDS, as in every stage's stage_env)...
HEALTH_TIMEOUT = 0.5
# ... and the client's, under two of them: an API that waits longer, or twice, fails.
HEALTH_DEADLINE = 0.9


@pytest.fixture
def health_api(
    start_api: Callable[..., RunningApi], stage_package: str, stage_env: dict[str, str]
) -> Callable[..., RunningApi]:
    def start(**env: str) -> RunningApi:
        env = {**stage_env, "HEALTH_TIMEOUT_SECONDS": str(HEALTH_TIMEOUT), **env}
        return start_api(f"{stage_package}.main:app", **env)

    return start


def health_within_deadline(base_url: str) -> httpx.Response:
    with httpx.Client(base_url=base_url, timeout=HEALTH_DEADLINE) as client:
        try:
            return client.get("/health")
        except httpx.TimeoutException:
            pytest.fail(f"/health did not answer within {HEALTH_DEADLINE:g} s")


def test_health_is_503_at_once_saying_redis_is_not_reachable(health_api) -> None:
    url = closed_url()
    api = health_api(REDIS_URL=url)

    response = health_within_deadline(api.base_url)

    assert response.status_code == 503
    assert response.json() == {
        "detail": f"The job queue (Redis at {url}) is not reachable: is Redis running there, and is REDIS_URL right?"
    }


def test_health_is_503_within_its_deadline_when_redis_accepts_but_does_not_answer(
    health_api,
    stalled_redis: RedisService,  # noqa: F811
) -> None:
    api = health_api(REDIS_URL=stalled_redis.url)

    response = health_within_deadline(api.base_url)

    assert response.status_code == 503
    assert response.json() == {
        "detail": f"The job queue (Redis at {stalled_redis.url}) did not answer within {HEALTH_TIMEOUT:g} s: "
        "try again later."
    }
