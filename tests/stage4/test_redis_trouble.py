"""A stalled Redis in every library: 503 within REDIS_TIMEOUT_SECONDS (Dramatiq's broker too: built
from a URL alone, it waited redis-py's own 5 s), and a /health that tells the truth within a second
(stage 2's tests, run here)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
import redis

from tests.job_api import wait_for_status
from tests.stage2.test_health import (  # noqa: F401 (collected by pytest)
    health_api,
    test_health_is_503_at_once_saying_redis_is_not_reachable,
    test_health_is_503_within_its_deadline_when_redis_accepts_but_does_not_answer,
)
from tests.stage2.test_redis_trouble import (  # noqa: F401 (fixtures)
    A_JOB,
    REDIS_TIMEOUT,
    answer_within_deadline,
    api_on_a_stalled_redis,
    stalled_redis,
)
from tests.stage4.conftest import LIBRARIES, STAGE
from tutorial.processes import ManagedProcess
from tutorial.redis_server import RedisService
from tutorial.waiting import wait_until


@pytest.fixture(scope="session")
def stage_package() -> str:
    """For stage 2's tests."""
    return STAGE


@pytest.mark.parametrize(
    ("method", "path", "body"), [("POST", "/jobs/add", {"x": 2, "y": 3}), ("GET", A_JOB, None)], ids=["post", "get"]
)
@pytest.mark.parametrize("library", LIBRARIES)
def test_a_stalled_redis_is_503_within_the_redis_timeout_in_every_library(
    api_on_a_stalled_redis: str,  # noqa: F811
    stalled_redis: RedisService,  # noqa: F811
    library: str,
    method: str,
    path: str,
    body: dict | None,
) -> None:
    response = answer_within_deadline(
        lambda client: client.request(method, f"/{library}{path}", json=body), api_on_a_stalled_redis
    )

    assert response.status_code == 503
    assert response.json() == {
        "detail": f"The job queue (Redis at {stalled_redis.url}) did not answer within {REDIS_TIMEOUT:g} s: "
        "try again later."
    }


def test_a_dramatiq_worker_with_a_short_redis_timeout_idles_and_runs_jobs_without_a_timeout(
    start_worker: Callable[..., ManagedProcess], client: httpx.Client, stage_env: dict[str, str]
) -> None:
    # The worker's client has the API's timeouts: nothing it sends may wait longer. Dramatiq's
    # consumer polls (a Lua script) and sleeps between polls, up to a second when idle: a blocking
    # read would time out here, and the log would say "Consumer encountered an unexpected error".
    worker = start_worker("dramatiq", REDIS_TIMEOUT_SECONDS="0.5")
    with redis.Redis.from_url(stage_env["REDIS_URL"]) as database:

        def polls() -> int:
            return database.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)

        idle_since = polls()
        # About 20 polls of the two queues (default, default.DQ), their pauses grown to a second.
        wait_until(lambda: polls() >= idle_since + 20, timeout=30, what="the idle worker's polls", seen=polls)

    response = client.post("/dramatiq/jobs/add", json={"x": 20, "y": 22})
    done = wait_for_status(client, response.json()["status_url"], "succeeded", timeout=20)

    assert done["result"] == 42
    assert "Timeout" not in worker.output()
    assert "Consumer encountered" not in worker.output()
