"""RQ and Dramatiq behind the job API of jobs.py: what each library's module does (rq_jobs.py,
dramatiq_jobs.py), and the steps around it that jobs.enqueue takes for Celery.

The Idempotency-Key claims are hardening.py's, for the three libraries: in the Redis of Celery's results.
"""

from collections.abc import Callable
from contextlib import suppress
from typing import Any, Literal, Protocol
from uuid import uuid4

from fastapi import HTTPException, Response, status
from redis import Redis

# Part of the stage4_rq_dramatiq package; in a flat project: from jobs import ...
from .config import settings
from .hardening import (
    Idempotency,
    RedisTrouble,
    claim_idempotency_key,
    complete_claim,
    earlier_job,
    redis_errors_as_503,
)
from .jobs import JobAccepted, JobStatus, accepted, asked_for

# The jobs RQ and Dramatiq run, by the job API's names for them (Celery's are its tasks, in tasks.py).
JobName = Literal["add", "report", "welcome", "webhook", "thumbnail"]


class JobLibrary(Protocol):
    """What RQ or Dramatiq does for the job API. Each raises RedisTrouble (via redis_errors_as_503) when Redis fails."""

    name: str  # the URL prefix: rq, dramatiq
    queue: str  # the queue its jobs wait in

    def enqueue(self, job: JobName, args: list[Any], job_id: str, delay_seconds: float) -> None:
        """Its RedisTrouble is timed_out only where Redis may still make the job."""

    def status(self, job_id: str) -> JobStatus | None: ...

    def dead_letters(self, limit: int) -> list[dict[str, Any]]:
        """The failed jobs, newest first, as dead_letters.py lists Celery's."""

    def replay(self, job_id: str) -> str | None:
        """Run a dead letter's job again; the id to follow (new, or the same where the library keeps it)."""

    def delete_dead_letter(self, job_id: str) -> bool: ...

    def workers(self, client: Redis | None = None) -> int:
        """How many workers consume its queue now (read with ``client``, else its own connection)."""


def enqueue_job(
    library: JobLibrary,
    job: JobName,
    args: list[Any],
    response: Response,
    idempotency: Idempotency | None = None,
    delay_seconds: float = 0,
    on_repeat: Callable[[], None] | None = None,
    asked: str | None = None,
) -> JobAccepted:
    """jobs.enqueue's steps around the library's own enqueue: claim the Idempotency-Key (if any) as
    pending, enqueue the job under a new id, then point the key at the job."""
    job_id = str(uuid4())
    if idempotency is not None:
        # float: a default 0 and a 0 sent are one delay.
        asked = asked or asked_for(job, args, float(delay_seconds))
        earlier = claim_idempotency_key(idempotency, job_id, asked)
        if earlier is not None:
            if on_repeat is not None:
                on_repeat()
            return accepted(earlier, response, library.name)
    try:
        library.enqueue(job, args, job_id, delay_seconds)
    except RedisTrouble as trouble:
        if idempotency is not None:
            # As in jobs.enqueue: not made frees the key; a publish that timed out may still be made.
            complete_claim(idempotency, job_id, asked, made=trouble.timed_out)
        raise
    if idempotency is not None:
        complete_claim(idempotency, job_id, asked, made=True)
    return accepted(job_id, response, library.name)


def status_of(library: JobLibrary, job_id: str) -> JobStatus:
    job = library.status(job_id)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"No job {job_id}: it was never issued, or it has expired.")
    if job.status == "queued":
        with redis_errors_as_503(settings.redis_url):
            workers = library.workers()
        if not workers:  # as jobs.job_status says it of Celery's queue (see workers.py)
            job.note = (
                f"No {library.name} worker consumes the queue '{library.queue}': the job waits until one starts "
                "(the stage's README says how)."
            )
    return job


def replay_job(library: JobLibrary, job_id: str, response: Response, idempotency: Idempotency | None) -> JobAccepted:
    """Replay a dead letter; with an Idempotency-Key, a repeated replay answers the job the first one made."""
    if idempotency is not None and (earlier := earlier_job(idempotency)) is not None:
        return accepted(earlier, response, library.name)
    to_follow = library.replay(job_id)
    if to_follow is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"No dead letter {job_id}.")
    if idempotency is not None:
        # The job is made: a key used meanwhile for another request (422), or still pending (409),
        # changes nothing of that. Claimed, the key points at the job.
        with suppress(HTTPException):
            if claim_idempotency_key(idempotency, to_follow, "") is None:
                complete_claim(idempotency, to_follow, "", made=True)
    return accepted(to_follow, response, library.name)
