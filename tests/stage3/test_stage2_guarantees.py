"""The stage-2 guarantees still hold in stage 3, tested the same way: stage 2's own tests, run here.

Pytest collects the imported test functions as tests of this module, so they use stage
3's fixtures (its API, its workers, its Redis database): same assertions, new stage.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest

from tests.stage2.test_bad_input import (  # noqa: F401 (collected by pytest)
    test_nan_or_infinity_in_a_body_is_422_naming_the_field_and_enqueues_nothing,
)
from tests.stage2.test_forgotten_worker import (  # noqa: F401 (collected by pytest)
    test_a_running_worker_makes_health_ok_and_a_job_waiting_its_turn_has_no_note_until_it_stops,
    test_health_is_degraded_and_names_each_queue_while_no_worker_runs,
)
from tests.stage2.test_health import (  # noqa: F401 (collected by pytest)
    health_api,
    test_health_is_503_at_once_saying_redis_is_not_reachable,
    test_health_is_503_within_its_deadline_when_redis_accepts_but_does_not_answer,
)
from tests.stage2.test_job_api import (  # noqa: F401 (collected by pytest)
    test_a_failing_job_is_reported_as_failed_with_its_error_not_as_a_500,
    test_a_job_accepted_before_the_api_restarts_still_runs,
    test_a_job_id_that_is_not_a_uuid_is_422_naming_the_field,
    test_a_job_waits_as_queued_until_a_worker_runs_it_then_succeeds_with_its_result,
    test_an_id_that_was_never_issued_is_404_although_celery_says_pending,
    test_bad_input_is_422_naming_the_field_and_enqueues_nothing,
    test_the_report_shows_its_progress_while_it_runs,
    test_the_welcome_email_job_is_started_while_sending_and_the_email_arrives,
)
from tests.stage2.test_redis_trouble import (  # noqa: F401 (collected by pytest)
    api_on_a_stalled_redis,
    closed_url,
    redis_on_a_unix_socket,
    redis_with_password,
    stalled_redis,
    test_a_broker_that_is_down_is_503_at_once_though_the_results_redis_answers,
    test_a_redis_error_that_is_not_about_reaching_it_is_reported_as_what_it_is,
    test_a_rediss_url_turns_on_tls_for_the_broker_and_the_results,
    test_a_stalled_broker_is_503_within_the_redis_timeout_though_the_results_redis_answers,
    test_a_stalled_redis_is_503_within_the_redis_timeout,
    test_a_wrong_password_is_reported_as_what_it_is_not_as_unreachable,
    test_asking_for_a_job_without_redis_is_503_too,
    test_enqueueing_without_redis_is_503_saying_it_is_not_reachable,
    test_the_stage_works_with_any_valid_redis_url,
    trouble_api,
)
from tutorial.processes import UvicornServer

EVERY_POST = [
    ("/jobs/add", {"x": 2, "y": 3}),
    ("/jobs/add", {"x": 2, "y": 3, "delay_seconds": 5}),
    ("/jobs/report", {"rows": [1, 2]}),
    ("/users/5/welcome", None),
    ("/events", {"type": "user.created", "payload": {}}),
]


@pytest.fixture(scope="module")
def api_without_redis(stage_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = {**os.environ, **stage_env, "REDIS_URL": closed_url(), "REDIS_TIMEOUT_SECONDS": "1"}
    log_dir = tmp_path_factory.mktemp("stage3-api-without-redis")
    with UvicornServer("stage3_retries.main:app", env=env, log_dir=log_dir) as api:
        yield api.base_url


@pytest.mark.parametrize(("path", "body"), EVERY_POST, ids=[path + str(i) for i, (path, _) in enumerate(EVERY_POST)])
def test_every_post_without_redis_is_503_within_seconds(api_without_redis: str, path: str, body: dict | None) -> None:
    # Also with an Idempotency-Key: claiming it is the first Redis call, and it is bounded too.
    headers = {"Idempotency-Key": f"key-{path}"}
    with httpx.Client(base_url=api_without_redis, timeout=1.8) as client:
        response = client.post(path, json=body, headers=headers)

    assert response.status_code == 503
    assert "is not reachable" in response.json()["detail"]


A_LETTER = "/dead-letters/0c4f3f0e-7d3c-4c5e-9a51-58d1b1b8b0a2"


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/dead-letters"), ("POST", f"{A_LETTER}/replay"), ("DELETE", A_LETTER)]
)
def test_the_dead_letters_without_redis_are_503_within_seconds(api_without_redis: str, method: str, path: str) -> None:
    with httpx.Client(base_url=api_without_redis, timeout=1.8) as client:
        response = client.request(method, path)

    assert response.status_code == 503
    assert "is not reachable" in response.json()["detail"]
