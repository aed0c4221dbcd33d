"""The API's /metrics reads each queue's depth from Redis when it is scraped: a collector, not a counter."""

from __future__ import annotations

import httpx

from tests.job_api import enqueue
from tests.stage5.conftest import QUEUE_NAMES, StageQueues, metric_samples, value


def test_the_depth_of_each_queue_is_read_from_redis_at_each_scrape(client: httpx.Client, queues: StageQueues) -> None:
    # No worker: the jobs wait, at two priorities in the reports queue.
    enqueue(client, "/jobs/report", {"rows": [1], "priority": "high"})
    enqueue(client, "/jobs/report", {"rows": [1], "priority": "low"})
    enqueue(client, "/users/2/welcome")

    waiting = metric_samples(client.get("/metrics").text)
    queues.drop_waiting_jobs()  # as if workers had taken them: nothing counted them down
    drained = metric_samples(client.get("/metrics").text)

    assert {queue: value(waiting, "jobs_waiting", queue=queue) for queue in QUEUE_NAMES} == {
        "emails": 1,
        "reports": 2,
        "integrations": 0,
        "default": 0,
    }
    assert {queue: value(drained, "jobs_waiting", queue=queue) for queue in QUEUE_NAMES} == dict.fromkeys(
        QUEUE_NAMES, 0
    )
    assert {queue: value(drained, "jobs_queue_workers", queue=queue) for queue in QUEUE_NAMES} == dict.fromkeys(
        QUEUE_NAMES, 0
    )
    assert value(drained, "jobs_redis_up") == 1
