"""Dead letters: the jobs that failed for good, kept in Redis until someone replays or deletes them.

A job fails for good when its retries are used up or its error is permanent (a 400, a
time limit, a bug). Celery then marks it FAILURE and forgets it when the result
expires; here the worker also keeps a dead letter, with no expiry, so nothing is
dropped silently: what it was (task, arguments), why it failed, after how many attempts.
"""

import json
from datetime import UTC, datetime
from typing import Any

from celery import Task
from celery.signals import task_failure

# Part of the stage4_rq_dramatiq package; in a flat project: from celery_app import celery_app
from .celery_app import attempts_key, celery_app

# Keys named after the app ("<app>:dead-letters"): the stages all use Redis's database 0 by
# default, and each must list and replay only its own letters.
INDEX = f"{celery_app.main}:dead-letters"  # a sorted set: job ids, scored by when they failed


def letter_key(job_id: str) -> str:
    return f"{celery_app.main}:dead-letter:{job_id}"


@task_failure.connect
def keep_dead_letter(sender: Task, task_id: str, exception: BaseException, args: list[Any], **_: Any) -> None:
    """The one hook Celery calls for every final failure: an exception, retries used up, a hard time limit.

    It can be called twice for one job (a hard time limit), so it writes by job id: the same letter twice.
    """
    if sender.app is not celery_app:
        return  # a signal reaches every Celery app of the process: keep this stage's letters only
    client = celery_app.backend.client
    letter = {
        "job_id": task_id,
        "task": sender.name,
        "args": list(args or []),
        "error": f"{type(exception).__name__}: {exception}",
        "attempts": int(client.get(attempts_key(task_id)) or 0),
        "failed_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    with client.pipeline() as pipe:
        pipe.set(letter_key(task_id), json.dumps(letter))
        pipe.zadd(INDEX, {task_id: datetime.now(UTC).timestamp()}, nx=True)
        pipe.execute()


def count_dead_letters() -> int:
    return celery_app.backend.client.zcard(INDEX)


def list_dead_letters(limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` dead letters, newest first."""
    client = celery_app.backend.client
    job_ids = [job_id.decode() for job_id in client.zrevrange(INDEX, 0, limit - 1)]
    if not job_ids:
        return []
    return [json.loads(raw) for raw in client.mget([letter_key(job_id) for job_id in job_ids]) if raw]


def take_dead_letter(job_id: str) -> dict[str, Any] | None:
    """Remove a dead letter and return it, in one step: of two replays at once, one gets it."""
    with celery_app.backend.client.pipeline(transaction=True) as pipe:
        raw, _, _ = pipe.get(letter_key(job_id)).delete(letter_key(job_id)).zrem(INDEX, job_id).execute()
    return json.loads(raw) if raw else None


def put_back_dead_letter(letter: dict[str, Any]) -> None:
    """Undo take_dead_letter, when its replay could not be enqueued."""
    with celery_app.backend.client.pipeline(transaction=True) as pipe:
        pipe.set(letter_key(letter["job_id"]), json.dumps(letter))
        pipe.zadd(INDEX, {letter["job_id"]: datetime.fromisoformat(letter["failed_at"]).timestamp()})
        pipe.execute()
