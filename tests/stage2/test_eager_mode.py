"""The seed's advice for tests, `task_always_eager=True`, as a lesson: what it hides.

Eager mode runs a task as a plain function call, right where it is called: no
broker, no worker, no result backend. That is why the rest of this suite uses a
real worker.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction

import pytest
from celery import Celery
from celery.result import AsyncResult
from kombu.exceptions import EncodeError

from tests.celery_stage import CeleryStage, Queues
from tutorial.waiting import wait_until


@contextmanager
def eager_mode(celery_app: Celery) -> Iterator[None]:
    """task_always_eager=True inside the block only, so it cannot leak into other tests."""
    celery_app.conf.task_always_eager = True
    try:
        yield
    finally:
        celery_app.conf.task_always_eager = False


def test_eager_mode_ignores_a_countdown_that_a_real_worker_waits_for(stage: CeleryStage, queues: Queues) -> None:
    one_hour = 3600
    with eager_mode(stage.celery_app):
        assert stage.tasks.add.apply_async((2, 3), countdown=one_hour).get() == 5, "it ran at once"

    job = stage.tasks.add.apply_async((2, 3), countdown=one_hour)
    with stage.worker() as worker:
        inspect = stage.celery_app.control.inspect(destination=[worker.hostname], timeout=5)
        scheduled = wait_until(
            lambda: (inspect.scheduled() or {}).get(worker.hostname),
            timeout=10,
            what="the worker to hold the job until its countdown ends",
        )
        assert [entry["request"]["id"] for entry in scheduled] == [job.id]
        assert job.state == "PENDING", "the worker has the job, and waits for its time to run it"

    # The worker gave the job back to the queue when it stopped: remove it.
    assert queues.waiting() == 1
    assert stage.celery_app.control.purge() == 1


def test_eager_mode_runs_the_job_but_leaves_no_state_for_the_status_endpoint(stage: CeleryStage) -> None:
    with eager_mode(stage.celery_app):
        eager_job = stage.tasks.add.delay(2, 3)
    assert eager_job.get() == 5
    # Nothing reached the result backend: GET /jobs/{id} would say "queued" forever.
    assert AsyncResult(eager_job.id, app=stage.celery_app).state == "PENDING"

    real_job = stage.tasks.add.delay(2, 3)
    with stage.worker():
        assert real_job.get(timeout=10) == 5
    assert AsyncResult(real_job.id, app=stage.celery_app).state == "SUCCESS"


def test_a_non_json_argument_is_refused_before_anything_is_published(stage: CeleryStage, queues: Queues) -> None:
    # Celery 5.7 sends eager arguments through the serializer too, so eager mode no
    # longer hides this one (older versions did, and the seed's advice dates from then).
    not_json = "Object of type Fraction is not JSON serializable"
    with eager_mode(stage.celery_app), pytest.raises(EncodeError, match=not_json):
        stage.tasks.add.delay(Fraction(1, 3), Fraction(1, 6))

    with pytest.raises(EncodeError, match=not_json):
        stage.tasks.add.delay(Fraction(1, 3), Fraction(1, 6))
    assert queues.waiting() == 0
