"""Stage 2 fixtures: the stage on the suite's own Redis, a real API server, real workers
(the fixtures every Celery stage shares are in tests/celery_stage.py)."""

from __future__ import annotations

import pytest

from tests.celery_stage import (  # noqa: F401 (fixtures)
    WORKER_WITHOUT_MINGLE,
    api_url,
    client,
    mail_server,
    queues,
    stage,
)
from tutorial.redis_server import RedisService, with_database

# Stage 2 keeps its queue and its results in database 2 of the private Redis: no
# other stage's tests share these keys.
QUEUE_DB = 2


@pytest.fixture(scope="session")
def stage_env(private_redis: RedisService) -> dict[str, str]:
    """The environment of every stage-2 process in the tests: quick tasks, the private Redis."""
    return {
        "REDIS_URL": with_database(private_redis.url, QUEUE_DB),
        "ADD_DELAY_SECONDS": "0",
        "REPORT_STEP_SECONDS": "0.2",
        # Well under the 1 s that a server's readiness check waits for /health, also with a stalled Redis.
        "HEALTH_TIMEOUT_SECONDS": "0.5",
        **WORKER_WITHOUT_MINGLE,
    }


@pytest.fixture(scope="session")
def stage_package() -> str:
    """The stage's package (tests shared with later stages ask for it by this name)."""
    return "stage2_celery"


@pytest.fixture(scope="session")
def fields_of_a_finished_job() -> dict[str, object]:
    """What this stage's job status adds, beyond stage 2's fields, once a job has run once."""
    return {}


@pytest.fixture(scope="session")
def queue_names() -> tuple[str, ...]:
    """The stage's queues, as /health names them: one, Celery's default."""
    return ("celery",)
