"""A forgotten worker is visible: /health names each queue with no worker, and a job that waits
in one says why (test_job_api.py shows the note). Each worker notes in Redis which queues it
consumes (workers.py), at once when it starts, and takes its note out when it stops."""

from __future__ import annotations

import httpx

from tests.celery_stage import CeleryStage
from tests.job_api import enqueue, job_status, wait_for_status
from tutorial.mail import SmtpSink

NOTE = "No worker consumes the queue '{queue}': the job waits until one starts (the stage's README says how)."


def test_health_is_degraded_and_names_each_queue_while_no_worker_runs(
    client: httpx.Client, queue_names: tuple[str, ...]
) -> None:
    response = client.get("/health")

    # 200 all the same: the API takes jobs, which wait.
    assert response.status_code == 200
    assert response.json() == {"status": "degraded", "redis": "ok", "workers": dict.fromkeys(queue_names, 0)}


def test_a_running_worker_makes_health_ok_and_a_job_waiting_its_turn_has_no_note_until_it_stops(
    stage: CeleryStage, client: httpx.Client, mail_server: SmtpSink, queue_names: tuple[str, ...]
) -> None:
    mail_server.hold()  # the worker's one process waits in the welcome e-mail: the next job waits its turn
    with stage.worker():
        running = client.get("/health").json()
        busy = enqueue(client, "/users/3/welcome")
        mail_server.wait_for_event("held")
        waiting = enqueue(client, "/jobs/add", {"x": 3, "y": 4})
        in_turn = job_status(client, waiting)
        mail_server.release()
        wait_for_status(client, busy, "succeeded")
        wait_for_status(client, waiting, "succeeded")
    stopped = client.get("/health").json()

    assert running == {"status": "ok", "redis": "ok", "workers": dict.fromkeys(queue_names, 1)}
    assert in_turn["status"] == "queued"
    assert "note" not in in_turn
    # A worker that stops cleanly takes its note out at once.
    assert stopped == {"status": "degraded", "redis": "ok", "workers": dict.fromkeys(queue_names, 0)}
