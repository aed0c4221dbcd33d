"""Stage 2 acknowledges a job when a worker takes it: a worker killed mid-job loses the job for good.

The contrast to stage 3's test_a_worker_killed_with_kill_9_mid_job_loses_nothing.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.celery_stage import Queues
from tests.job_api import enqueue, job_status, wait_for_status
from tests.procfile import procfile_process


def test_a_worker_killed_mid_job_leaves_the_job_started_forever(
    stage_env: dict[str, str], client: httpx.Client, queues: Queues, tmp_path: Path
) -> None:
    env = {**stage_env, "ADD_DELAY_SECONDS": "2"}
    with procfile_process("stage2_celery", "worker", env, tmp_path) as worker:
        worker.wait_for_output(" ready.", timeout=30)
        status_url = enqueue(client, "/jobs/add", {"x": 20, "y": 22})
        wait_for_status(client, status_url, "started")
        worker.kill()  # SIGKILL to the whole process group, mid-job

    # The message was acknowledged when the worker took it: Redis has nothing left to redeliver...
    assert (queues.waiting(), queues.unacknowledged()) == (0, 0)
    new_worker = procfile_process("stage2_celery", "worker", env, tmp_path)
    new_worker.name = "new-worker"
    with new_worker:
        new_worker.wait_for_output(" ready.", timeout=30)
        # ...so a new worker, up and listening, has nothing to run: the job says started, and always will.
        assert job_status(client, status_url)["status"] == "started"
        assert "Task stage2_celery.tasks.add" not in new_worker.output()
