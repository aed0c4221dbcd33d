"""The job API contract of stages 2 and 3 still holds in stage 5, tested the same way: their own tests, run here.

Pytest collects the imported test functions as tests of this module, so they use stage 5's
fixtures (its API, its in-process workers, which consume every queue, its Redis database).
A choice, to keep the suite quick: the code they test further (dead letters, countdowns,
time limits) is stage 3's, unchanged, and tested there; of the dead letters, what needs no
worker (whose letters this stage sees, and which replays keep them) runs here too. The stage-2 test that compares a
whole answer is rewritten below: stage 5's answer also names the job's queue.
"""

from __future__ import annotations

import httpx

from tests.celery_stage import CeleryStage
from tests.job_api import enqueue, job_status, wait_for_status
from tests.stage2.test_bad_input import (  # noqa: F401 (collected by pytest)
    test_nan_or_infinity_in_a_body_is_422_naming_the_field_and_enqueues_nothing,
)
from tests.stage2.test_forgotten_worker import (  # noqa: F401 (collected by pytest)
    NOTE,
    test_a_running_worker_makes_health_ok_and_a_job_waiting_its_turn_has_no_note_until_it_stops,
    test_health_is_degraded_and_names_each_queue_while_no_worker_runs,
)
from tests.stage2.test_job_api import (  # noqa: F401 (collected by pytest)
    test_a_job_id_that_is_not_a_uuid_is_422_naming_the_field,
    test_an_id_that_was_never_issued_is_404_although_celery_says_pending,
    test_bad_input_is_422_naming_the_field_and_enqueues_nothing,
    test_the_report_shows_its_progress_while_it_runs,
    test_the_welcome_email_job_is_started_while_sending_and_the_email_arrives,
)
from tests.stage3.test_bad_input import (  # noqa: F401 (collected by pytest)
    test_nan_or_infinity_in_a_countdown_or_an_event_payload_is_422_naming_the_field_and_enqueues_nothing,
)
from tests.stage3.test_dead_letters import (  # noqa: F401 (collected by pytest)
    test_a_dead_letter_of_a_task_this_app_does_not_have_is_409_naming_it_and_is_kept,
    test_a_replay_repeated_with_its_idempotency_key_answers_the_same_job_and_makes_no_second_one,
    test_a_replay_that_the_broker_refuses_is_503_and_keeps_the_letter,
    test_no_dead_letter_yet_is_an_empty_list,
    test_the_dead_letters_of_the_other_stages_on_the_same_redis_are_not_listed_replayed_or_deleted_here,
)
from tests.stage3.test_idempotency import (  # noqa: F401 (collected by pytest)
    test_a_key_is_remembered_no_longer_than_its_job_is_known,
    test_the_same_key_and_body_answer_the_same_job_and_make_no_second_one,
)
from tests.stage3.test_retries import (  # noqa: F401 (collected by pytest)
    test_a_flaky_webhook_succeeds_on_the_third_attempt_with_one_idempotency_key,
)
from tests.stage5.conftest import StageQueues


def test_a_job_waits_as_queued_in_its_queue_until_a_worker_runs_it_then_succeeds_with_its_result(
    stage: CeleryStage, client: httpx.Client, queues: StageQueues
) -> None:
    status_url = enqueue(client, "/jobs/add", {"x": 2, "y": 3})
    job_id = status_url.removeprefix("/jobs/")

    assert queues.waiting_in("default") == 1
    assert job_status(client, status_url) == {
        "job_id": job_id,
        "status": "queued",
        "backend_status": "PENDING",
        "queue": "default",
        "note": NOTE.format(queue="default"),
    }
    with stage.worker():
        done = wait_for_status(client, status_url, "succeeded")

    assert done == {
        "job_id": job_id,
        "status": "succeeded",
        "backend_status": "SUCCESS",
        "queue": "default",
        "attempts": 1,
        "result": 5,
    }
