"""The job API's backend for Celery: stage 3's enqueue and status, now behind api.JobBackend.

Celery answers PENDING for any id, even one it never saw, so the job's PENDING state
is stored first, as its mark (one key, expiring with the result): status() can then
tell "queued" from "never issued". If publishing fails, the client gets a 503 and
never learns the id, so the mark left behind is harmless.
"""

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

from celery import states
from kombu.exceptions import OperationalError

# Part of the stage4_rq_dramatiq package; in a flat project: from api import ...
from .api import DeadLetter, JobStatus, Progress, RedisTrouble, Task, cannot_run, redis_errors_as_503
from .celery_app import celery_app
from .dead_letters import list_dead_letters, put_back_dead_letter, take_dead_letter
from .tasks import add, deliver_webhook, generate_report, make_thumbnail, send_welcome_email

TASKS = {
    "add": add,
    "report": generate_report,
    "welcome": send_welcome_email,
    "webhook": deliver_webhook,
    "thumbnail": make_thumbnail,
}

# Celery's states, in the words of the job API.
STATUS_OF_CELERY_STATE = {
    states.PENDING: "queued",
    states.STARTED: "started",  # only with task_track_started
    "PROGRESS": "progress",  # the custom state of generate_report
    states.RETRY: "retrying",  # waiting for the next attempt; the result is the last error
    states.SUCCESS: "succeeded",
    states.FAILURE: "failed",
}


class CeleryJobs:
    name = "celery"

    def enqueue(self, task: Task, args: list[Any], job_id: str, delay_seconds: float) -> None:
        run_at = datetime.now(UTC) + timedelta(seconds=delay_seconds) if delay_seconds else None
        try:
            with redis_errors_as_503(celery_app.backend.url):
                # A scheduled job's mark also says when it is due.
                mark = {"run_at": run_at.isoformat()} if run_at else None
                celery_app.backend.store_result(job_id, mark, states.PENDING)
        except RedisTrouble as trouble:
            # Nothing is published yet: whatever Redis still does with the mark, no job is made.
            raise RedisTrouble(trouble.detail, timed_out=False) from trouble
        with redis_errors_as_503(celery_app.conf.broker_url, OperationalError):
            # retry=False: with the broker gone, fail now rather than retry while the client waits.
            # No time limits in the message: the worker's own settings apply (Celery would
            # otherwise copy this process's limits into every message it publishes).
            TASKS[task].apply_async(
                args, task_id=job_id, retry=False, eta=run_at, soft_time_limit=None, time_limit=None
            )

    def status(self, job_id: str) -> JobStatus | None:
        with redis_errors_as_503(celery_app.backend.url):
            # One read, so the state and its data (result, error or progress) belong together.
            meta = celery_app.backend.get_task_meta(job_id)
            attempts = celery_app.backend.client.get(f"job-attempts:{job_id}")
        # For an id with nothing stored Celery makes up {"status": "PENDING", "result": None};
        # every state it stores, our mark included, carries the task_id.
        if "task_id" not in meta:
            return None
        state, info = meta["status"], meta["result"]
        # Any other state (a custom one, set by a running task) counts as started; backend_status names it.
        job = JobStatus(job_id=job_id, status=STATUS_OF_CELERY_STATE.get(state, "started"), backend_status=state)
        if attempts is not None:
            job.attempts = int(attempts)
        if state == states.SUCCESS:
            job.result = info
        elif state == "PROGRESS":
            job.progress = Progress(**info)
        elif state == states.PENDING and isinstance(info, dict) and "run_at" in info:
            job.run_at = datetime.fromisoformat(info["run_at"])
            if job.run_at > datetime.now(UTC):
                job.status = "scheduled"
        elif isinstance(info, BaseException):
            # Celery rebuilds the task's exception here; the client gets its type and message only.
            job.error = f"{type(info).__name__}: {info}"
        return job

    def dead_letters(self, limit: int) -> list[DeadLetter]:
        with redis_errors_as_503(celery_app.backend.url):
            return [DeadLetter(**letter) for letter in list_dead_letters(limit)]

    def replay(self, job_id: str) -> str | None:
        """Celery can run the same work under a new id: the replay is a new job."""
        with redis_errors_as_503(celery_app.backend.url):
            letter = take_dead_letter(job_id)
        if letter is None:
            return None
        new_id = str(uuid4())
        try:
            if letter["task"] not in TASK_OF_NAME:
                raise cannot_run(job_id, letter["task"])
            self.enqueue(TASK_OF_NAME[letter["task"]], letter["args"], new_id, 0)
        except Exception:
            # Nothing is lost, whatever went wrong: the letter waits for the next replay.
            with redis_errors_as_503(celery_app.backend.url):
                put_back_dead_letter(letter)
            raise
        return new_id

    def delete_dead_letter(self, job_id: str) -> bool:
        with redis_errors_as_503(celery_app.backend.url):
            return take_dead_letter(job_id) is not None


TASK_OF_NAME: dict[str, Task] = {task.name: name for name, task in TASKS.items()}
