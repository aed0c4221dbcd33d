"""The worker command of the README, run the way a learner runs it, processes a job."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import httpx

from tests.job_api import enqueue, wait_for_status
from tutorial.processes import ManagedProcess

# As in the README, plus --pool=solo (the README's advice on Windows; here: one process, quick to stop).
WORKER_COMMAND = "celery -A stage2_celery worker --loglevel=INFO --pool=solo"


def test_the_documented_worker_command_processes_a_job(
    client: httpx.Client, stage_env: dict[str, str], tmp_path: Path
) -> None:
    program, *args = WORKER_COMMAND.split()
    # The `celery` program of this virtual environment, as `source .venv/bin/activate` would find it.
    celery = shutil.which(program, path=str(Path(sys.executable).parent))
    assert celery is not None, f"no {program} next to {sys.executable}"

    with ManagedProcess("celery-worker", [celery, *args], env={**os.environ, **stage_env}, log_dir=tmp_path) as worker:
        worker.wait_for_output(" ready.", timeout=30)
        status_url = enqueue(client, "/jobs/add", {"x": 20, "y": 22})
        done = wait_for_status(client, status_url, "succeeded")

    assert done["result"] == 42
    job_id = status_url.removeprefix("/jobs/")
    assert f"Task stage2_celery.tasks.add[{job_id}] succeeded" in worker.output()
