"""The job API's backend for Dramatiq: messages on a Redis queue, states from dramatiq_app.JobStates.

The worker: dramatiq stage4_rq_dramatiq.dramatiq_actors
"""

import json
from datetime import datetime
from typing import Any
from uuid import uuid4

import dramatiq
from dramatiq.results import ResultFailure, ResultMissing

# Part of the stage4_rq_dramatiq package; in a flat project: from api import ...
from . import dramatiq_actors
from .api import DeadLetter, JobStatus, Progress, RedisTrouble, Task, redis_errors_as_503
from .config import settings
from .dramatiq_app import QUEUE, broker, results, state_key

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

    def enqueue(self, task: Task, args: list[Any], job_id: str, delay_seconds: float) -> None:
        message = ACTORS[task].message(*args).copy(message_id=job_id)
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

    def dead_letters(self, limit: int) -> list[DeadLetter]:
        with redis_errors_as_503(settings.redis_url):
            job_ids = [job_id.decode() for job_id in broker.client.zrevrange(DEAD_IDS, 0, limit - 1)]
            states = [broker.client.hgetall(state_key(job_id)) for job_id in job_ids]
            raw_messages = broker.client.hmget(DEAD_MESSAGES, job_ids) if job_ids else []
        letters = []
        for job_id, state, raw in zip(job_ids, states, raw_messages, strict=True):
            if raw is None:
                continue
            message = dramatiq.Message.decode(raw)
            fields = {name.decode(): json.loads(value) for name, value in state.items()}
            letters.append(
                DeadLetter(
                    job_id=job_id,
                    task=f"{message.queue_name}:{message.actor_name}",
                    args=list(message.args),
                    error=fields.get("error", ""),
                    attempts=fields.get("attempts", 0),
                    failed_at=fields.get("failed_at", ""),
                )
            )
        return letters

    def replay(self, job_id: str) -> str | None:
        """A new message (a new id) with the dead one's actor and arguments; the dead one is removed."""
        # Taken in one step: of two replays at once, one gets it.
        with redis_errors_as_503(settings.redis_url), broker.client.pipeline(transaction=True) as pipe:
            raw, score, removed, _ = (
                    pipe.hget(DEAD_MESSAGES, job_id).zscore(DEAD_IDS, job_id).zrem(DEAD_IDS, job_id)
                    .hdel(DEAD_MESSAGES, job_id).execute()
                )  # fmt: skip
        if not removed:
            return None
        new_id = str(uuid4())
        try:
            with redis_errors_as_503(settings.redis_url):
                broker.enqueue(dramatiq.Message.decode(raw).copy(message_id=new_id, options={}))
        except RedisTrouble:
            with redis_errors_as_503(settings.redis_url):  # nothing is lost: it waits for the next replay
                broker.client.pipeline().zadd(DEAD_IDS, {job_id: score}).hset(DEAD_MESSAGES, job_id, raw).execute()
            raise
        return new_id

    def delete_dead_letter(self, job_id: str) -> bool:
        with redis_errors_as_503(settings.redis_url):
            return self.remove_dead(job_id)

    @staticmethod
    def remove_dead(job_id: str) -> bool:
        with broker.client.pipeline(transaction=True) as pipe:
            removed, _ = pipe.zrem(DEAD_IDS, job_id).hdel(DEAD_MESSAGES, job_id).execute()
        return bool(removed)
