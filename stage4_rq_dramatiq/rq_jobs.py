"""The job API's backend for RQ: a queue in Redis, a job hash per job, registries for the rest.

The worker (see the Procfile): rq worker --with-scheduler --url $REDIS_URL --serializer rq.serializers.JSONSerializer
default (--with-scheduler runs the scheduler that enqueues delayed jobs and retries with an interval).
"""

import re
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from typing import Any

from redis import Redis
from rq import Queue, Retry, Worker
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job
from rq.job import JobStatus as RqStatus
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer

# Part of the stage4_rq_dramatiq package; in a flat project: from jobs import ...
from . import rq_tasks
from .config import settings
from .hardening import redis_errors_as_503
from .jobs import JobStatus, Progress
from .libraries import JobName
from .work import backoff_seconds

QUEUE = "default"
# `connection=` everywhere: RQ 2 removed the seed's `with Connection(...)`.
connection = Redis.from_url(
    settings.redis_url,
    socket_connect_timeout=settings.redis_timeout_seconds,
    socket_timeout=settings.redis_timeout_seconds,
)
# JSON, not RQ's default pickle: the worker must be started with the same --serializer.
queue = Queue(QUEUE, connection=connection, serializer=JSONSerializer)
failed_jobs = FailedJobRegistry(queue=queue)

FUNCTIONS = {
    "add": rq_tasks.add,
    "report": rq_tasks.generate_report,
    "welcome": rq_tasks.send_welcome_email,
    "webhook": rq_tasks.deliver_webhook,
    "thumbnail": rq_tasks.make_thumbnail,
}


def retries(job: JobName) -> Retry | None:
    """RQ's retries: fixed waits (whole seconds), drawn now with full jitter, one per retry."""
    count = {"webhook": settings.webhook_max_retries, "welcome": settings.email_max_retries}.get(job)
    if count is None:
        return None
    return Retry(max=count, interval=[round(backoff_seconds(n)) for n in range(count)])


class RqJobs:
    name = "rq"
    queue = QUEUE

    def enqueue(self, job: JobName, args: list[Any], job_id: str, delay_seconds: float) -> None:
        retry = retries(job)
        options: dict[str, Any] = {
            "job_id": job_id,
            "retry": retry,
            # RQ counts the retries left, not the attempts made: keep the total to count them.
            "meta": {"max_retries": retry.max if retry else 0},
            "result_ttl": settings.result_expires_seconds,
            "job_timeout": settings.report_time_limit_seconds if job == "report" else None,
        }
        with redis_errors_as_503(settings.redis_url):
            if delay_seconds:
                queue.enqueue_in(timedelta(seconds=delay_seconds), FUNCTIONS[job], *args, **options)
            else:
                queue.enqueue(FUNCTIONS[job], *args, **options)

    def status(self, job_id: str) -> JobStatus | None:
        with redis_errors_as_503(settings.redis_url):
            try:
                job = Job.fetch(job_id, connection=connection, serializer=JSONSerializer)
            except NoSuchJobError:
                return None
            state = job.get_status()
            last = job.latest_result()
            progress = job.get_meta(refresh=False).get("progress")
            scheduled_for = None
            if state == RqStatus.SCHEDULED:
                try:
                    scheduled_for = queue.scheduled_job_registry.get_scheduled_time(job)
                except NoSuchJobError:  # RQ's scheduler queued it in between: it is due, and queued
                    state = RqStatus.QUEUED
        retried = retries_made(job)
        job_status = JobStatus(job_id=job_id, status="queued", backend_status=state.value)
        if state in (RqStatus.STARTED, RqStatus.FINISHED, RqStatus.FAILED) or retried:
            job_status.attempts = retried + 1
        if state == RqStatus.FINISHED:
            job_status.status, job_status.result = "succeeded", job.return_value()
        elif state == RqStatus.FAILED:
            job_status.status, job_status.error = "failed", last_error(last)
        elif state == RqStatus.STARTED:
            job_status.status = "progress" if progress else "started"
            job_status.progress = Progress(**progress) if progress else None
        elif retried:  # queued or scheduled again after a failed attempt
            job_status.status, job_status.error = "retrying", last_error(last)
        elif state == RqStatus.SCHEDULED:
            job_status.status, job_status.run_at = "scheduled", scheduled_for
        return job_status

    def workers(self, client: Redis | None = None) -> int:
        """RQ's own registry of workers, per queue: a worker joins it when it starts and leaves it when it
        stops cleanly. A killed one stays until its key expires (RQ's worker_ttl: minutes) and a worker's
        clean-up drops it."""
        return Worker.count(queue=queue if client is None else Queue(QUEUE, connection=client))

    def dead_letters(self, limit: int) -> list[dict[str, Any]]:
        """RQ's FailedJobRegistry is the dead-letter list: failed jobs wait there (a year by default)."""
        with redis_errors_as_503(settings.redis_url):
            job_ids = failed_jobs.get_job_ids(0, limit - 1, desc=True)
            jobs = [job for job in Job.fetch_many(job_ids, connection=connection, serializer=JSONSerializer) if job]
        return [
            {
                "job_id": job.id,
                "task": job.func_name,
                "args": list(job.args),
                "error": last_error(job.latest_result()) or "",
                "attempts": retries_made(job) + 1,
                "failed_at": (job.ended_at or datetime.now(UTC)).replace(tzinfo=UTC).isoformat(timespec="seconds"),
            }
            for job in jobs
        ]

    def replay(self, job_id: str) -> str | None:
        """RQ requeues the failed job itself: the same id, to follow as before."""
        with redis_errors_as_503(settings.redis_url):
            try:
                failed_jobs.requeue(job_id)
            except (NoSuchJobError, InvalidJobOperation):  # no such job, or not (or no longer) a failed one
                return None
        return job_id

    def delete_dead_letter(self, job_id: str) -> bool:
        with redis_errors_as_503(settings.redis_url):
            if not failed_jobs.remove(job_id):  # one step: of two deletes at once, one removes it
                return False
            with suppress(NoSuchJobError):  # the job's own key may be gone already (expired, evicted)
                Job.fetch(job_id, connection=connection, serializer=JSONSerializer).delete()
        return True


def retries_made(job: Job) -> int:
    """How many times RQ has retried the job (a redelivery after a crash is not counted: RQ has none)."""
    if job.retries_left is None:
        return 0
    return job.meta.get("max_retries", 0) - job.retries_left


def last_error(result: Any) -> str | None:
    """The last line of a failed attempt's traceback, as 'Type: message' (without the module path).

    RQ's own notes (an abandoned job: 'Moved to FailedJobRegistry, due to AbandonedJobError, at
    ...') are no traceback: they are kept as they are.
    """
    if result is None or not result.exc_string:
        return None
    line = result.exc_string.strip().splitlines()[-1]
    kind, _, message = line.partition(": ")
    if not re.fullmatch(r"[\w.]+", kind):
        return line
    return f"{kind.rsplit('.', 1)[-1]}: {message}" if message else kind.rsplit(".", 1)[-1]
