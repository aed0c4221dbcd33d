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


# What a label may say of a request's method; any other word is counted as "other".
METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"}


def test_invented_methods_and_paths_are_counted_under_one_label_value_each(client: httpx.Client) -> None:
    # uvicorn passes any method on (curl -X ZZTOP), and a path with a "/" too many is redirected
    # without its slash (307): as labels, each would be a new series in every scrape, for ever.
    before = metric_samples(client.get("/metrics").text)
    for number in range(24):
        assert client.request(f"ZZTOP{number}", "/health").status_code == 405
    for number in range(12):
        assert client.get(f"/jobs/not-a-job-{number}/").status_code == 307
    after = metric_samples(client.get("/metrics").text)

    def change(**labels: str) -> float:
        return value(after, "http_requests_total", **labels) - value(before, "http_requests_total", **labels)

    requests = [dict(labels) for name, labels in after if name == "http_requests_total"]
    assert {labels["method"] for labels in requests} <= METHODS
    assert not [labels["handler"] for labels in requests if "not-a-job" in labels["handler"]]
    assert change(handler="/health", method="other", status="405") == 24
    assert change(handler="none", method="GET", status="307") == 12
