"""The job API's backend for Dramatiq: messages on a Redis queue, states from dramatiq_app.JobStates.

The worker: dramatiq stage4_rq_dramatiq.dramatiq_actors
"""

import json
import time
from datetime import datetime
from typing import Any
from uuid import uuid4

import dramatiq
from dramatiq.results import ResultFailure, ResultMissing
from redis import Redis

# Part of the stage4_rq_dramatiq package; in a flat project: from jobs import ...
from . import dramatiq_actors
from .config import settings
from .dramatiq_app import QUEUE, WORKERS, broker, results, state_key
from .hardening import redis_errors_as_503
from .jobs import JobStatus, Progress, cannot_run
from .libraries import JobName

ACTORS = {
    "add": dramatiq_actors.add,
    "report": dramatiq_actors.generate_report,
    "welcome": dramatiq_actors.send_welcome_email,
    "webhook": dramatiq_actors.deliver_webhook,
    "thumbnail": dramatiq_actors.make_thumbnail,
}
# Dead messages: Dramatiq's Redis broker keeps them in a sorted set and a hash (7 days), with
# no public API to list or requeue them: read them where the broker writes them.
DEAD_IDS = f"dramatiq:{QUEUE}.XQ"
DEAD_MESSAGES = f"dramatiq:{QUEUE}.XQ.msgs"


class DramatiqJobs:
    name = "dramatiq"
    queue = QUEUE

    def enqueue(self, job: JobName, args: list[Any], job_id: str, delay_seconds: float) -> None:
        message = ACTORS[job].message(*args).copy(message_id=job_id)
        with redis_errors_as_503(settings.redis_url):
            broker.enqueue(message, delay=int(delay_seconds * 1000) or None)

    def status(self, job_id: str) -> JobStatus | None:
        with redis_errors_as_503(settings.redis_url):
            state = {
                name.decode(): json.loads(value) for name, value in broker.client.hgetall(state_key(job_id)).items()
            }
            if not state:
                return None
            result = self.result(job_id, state) if state["status"] == "succeeded" else None
        job = JobStatus(
            job_id=job_id,
            status=state["status"],
            backend_status=state["status"],  # Dramatiq has no states of its own: these are JobStates'
            attempts=state.get("attempts"),
            error=state.get("error") if state["status"] in ("retrying", "failed") else None,
            result=result,
        )
        if state.get("progress") and state["status"] == "progress":
            job.progress = Progress(**state["progress"])
        if state.get("run_at") and state["status"] == "scheduled":
            job.run_at = datetime.fromisoformat(state["run_at"])
        return job

    def result(self, job_id: str, state: dict[str, Any]) -> Any:
        """From the Results middleware: its key is made from the message's queue, actor and id."""
        message = dramatiq.Message(queue_name=QUEUE, actor_name=state["actor"], args=(), kwargs={}, options={})
        try:
            return results.get_result(message.copy(message_id=job_id))
        except (ResultMissing, ResultFailure):
            return None

    def workers(self, client: Redis | None = None) -> int:
        """The worker processes that noted in the last WORKER_NOTE_EXPIRY_SECONDS that they run (see NoteWorker)."""
        since = time.time() - settings.worker_note_expiry_seconds
        return (client or broker.client).zcount(WORKERS, since, "+inf")

    def dead_letters(self, limit: int) -> list[dict[str, Any]]:
        with redis_errors_as_503(settings.redis_url):
            redis_ids = broker.client.zrevrange(DEAD_IDS, 0, limit - 1)
            if not redis_ids:
                return []  # none yet (and HMGET without a field is an error)
            dead = [dramatiq.Message.decode(raw) for raw in broker.client.hmget(DEAD_MESSAGES, redis_ids) if raw]
            states = [self.state(message.message_id) for message in dead]
        return [
            {
                "job_id": message.message_id,
                "task": message.actor_name,
                "args": list(message.args),
                "error": state.get("error", ""),
                "attempts": state.get("attempts", 0),
                "failed_at": state.get("failed_at", ""),
            }
            for message, state in zip(dead, states, strict=True)
        ]

    def replay(self, job_id: str) -> str | None:
        """A new message (a new id) with the dead one's actor and arguments; the dead one is removed."""
        with redis_errors_as_503(settings.redis_url):
            taken = self.take_dead(job_id)
        if taken is None:
            return None
        redis_id, score, raw = taken
        new_id = str(uuid4())
        try:
            dead = dramatiq.Message.decode(raw)
            if dead.actor_name not in broker.get_declared_actors():
                raise cannot_run(job_id, dead.actor_name)
            with redis_errors_as_503(settings.redis_url):
                # A fresh message of the same actor and arguments: the dead one's options (its retries) stay behind.
                broker.enqueue(
                    broker.get_actor(dead.actor_name).message(*dead.args, **dead.kwargs).copy(message_id=new_id)
                )
        except Exception:
            # Nothing is lost, whatever went wrong: the dead message waits for the next replay.
            with redis_errors_as_503(settings.redis_url):
                broker.client.pipeline().zadd(DEAD_IDS, {redis_id: score}).hset(DEAD_MESSAGES, redis_id, raw).execute()
            raise
        return new_id

    def delete_dead_letter(self, job_id: str) -> bool:
        with redis_errors_as_503(settings.redis_url):
            return self.take_dead(job_id) is not None

    def state(self, job_id: str) -> dict[str, Any]:
        raw_state = broker.client.hgetall(state_key(job_id))
        return {name.decode(): json.loads(value) for name, value in raw_state.items()}

    def take_dead(self, job_id: str) -> tuple[str, float, bytes] | None:
        """Remove a dead message in one step (of two replays at once, one gets it): its key, score, bytes."""
        redis_id = self.state(job_id).get("redis_id")
        if redis_id is None:
            return None
        with broker.client.pipeline(transaction=True) as pipe:
            raw, score, removed, _ = (
                pipe.hget(DEAD_MESSAGES, redis_id).zscore(DEAD_IDS, redis_id).zrem(DEAD_IDS, redis_id)
                .hdel(DEAD_MESSAGES, redis_id).execute()
            )  # fmt: skip
        return (redis_id, score, raw) if removed else None
