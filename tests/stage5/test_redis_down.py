"""Without Redis the API still answers at once: 503 for every job posted, and a /health that says why."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.conftest import RunningApi
from tests.stage2.test_redis_trouble import closed_url, stalled_redis  # noqa: F401 (a fixture)
from tests.stage5.conftest import STAGE
from tutorial.processes import UvicornServer
from tutorial.redis_server import RedisService

EVERY_POST = [
    ("/jobs/add", {"x": 2, "y": 3}),
    ("/jobs/add", {"x": 2, "y": 3, "delay_seconds": 5}),
    ("/jobs/report", {"rows": [1, 2]}),
    ("/jobs/report", {"rows": [1, 2], "priority": "high"}),
    ("/users/5/welcome", None),
    ("/events", {"type": "user.created", "payload": {}}),
]
# Under two of the API's HEALTH_TIMEOUT_SECONDS (0.5 s in the tests): an API that waits longer, or twice, fails.
HEALTH_DEADLINE = 0.9


@pytest.fixture(scope="module")
def api_without_redis(stage_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = closed_url()
    env = {**os.environ, **stage_env, "REDIS_URL": url, "REDIS_TIMEOUT_SECONDS": "1"}
    log_dir = tmp_path_factory.mktemp("stage5-api-without-redis")
    with UvicornServer(f"{STAGE}.main:app", env=env, log_dir=log_dir) as api:
        yield api.base_url


def health_within_deadline(base_url: str) -> httpx.Response:
    with httpx.Client(base_url=base_url, timeout=HEALTH_DEADLINE) as client:
        try:
            return client.get("/health")
        except httpx.TimeoutException:
            pytest.fail(f"/health did not answer within {HEALTH_DEADLINE:g} s")


@pytest.mark.parametrize(("path", "body"), EVERY_POST, ids=[path + str(i) for i, (path, _) in enumerate(EVERY_POST)])
def test_every_post_without_redis_is_503_within_seconds(api_without_redis: str, path: str, body: dict | None) -> None:
    # Also with an Idempotency-Key: claiming it is the first Redis call, and it is bounded too.
    headers = {"Idempotency-Key": f"key-{path}"}
    with httpx.Client(base_url=api_without_redis, timeout=1.8) as client:
        response = client.post(path, json=body, headers=headers)

    assert response.status_code == 503
    assert "is not reachable" in response.json()["detail"]


def test_health_is_503_at_once_saying_redis_is_not_reachable(api_without_redis: str) -> None:
    response = health_within_deadline(api_without_redis)

    assert response.status_code == 503
    assert response.json()["detail"].endswith("is not reachable: is Redis running there, and is REDIS_URL right?")


def test_health_is_503_within_its_deadline_when_redis_accepts_but_does_not_answer(
    start_api: Callable[..., RunningApi],
    stage_env: dict[str, str],
    stalled_redis: RedisService,  # noqa: F811
) -> None:
    api = start_api(f"{STAGE}.main:app", **{**stage_env, "REDIS_URL": stalled_redis.url})

    response = health_within_deadline(api.base_url)

    assert response.status_code == 503
    assert response.json() == {
        "detail": f"The job queue (Redis at {stalled_redis.url}) did not answer within 0.5 s: try again later."
    }


def test_metrics_without_redis_say_so_and_leave_the_queue_numbers_out(api_without_redis: str) -> None:
    with httpx.Client(base_url=api_without_redis, timeout=5) as client:
        text = client.get("/metrics").text

    lines = [line for line in text.splitlines() if line.startswith(("jobs_redis_up", "jobs_waiting{"))]
    assert lines == ["jobs_redis_up 0.0"], "no number is better than a wrong one"
