"""The stage's processes as a learner starts them, from stage3_retries/Procfile: a worker killed
with kill -9 mid-job, time limits in the prefork pool, the beat's digest, and honcho running it all."""

from __future__ import annotations

import re
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.celery_stage import CeleryStage, Queues
from tests.job_api import enqueue, job_status, wait_for_status
from tests.procfile import VENV_BIN, procfile_env, procfile_process, procfile_starter, services_env
from tutorial.mail import SmtpSink
from tutorial.processes import REPO_ROOT, ManagedProcess, free_port, wait_for_exit
from tutorial.webhooks import WebhookReceiver

STAGE = "stage3_retries"


@pytest.fixture
def start(
    stage_env: dict[str, str], smtp_sink: SmtpSink, webhook_receiver: WebhookReceiver, tmp_path: Path
) -> Iterator[Callable[..., ManagedProcess]]:
    """Start a line of the Procfile with the tests' services; all are stopped together at the end."""
    with procfile_starter(STAGE, {**stage_env, **services_env(smtp_sink, webhook_receiver)}, tmp_path) as start:
        yield start


def test_a_worker_killed_with_kill_9_mid_job_loses_nothing(
    start: Callable[..., ManagedProcess], client: httpx.Client, queues: Queues
) -> None:
    # A job long enough to be seen started: 1 s; the visibility timeout, 2 s, is longer than the job (as it must be).
    slow = {"ADD_DELAY_SECONDS": "1", "VISIBILITY_TIMEOUT_SECONDS": "2"}
    worker = start("worker", " ready.", **slow)
    status_url = enqueue(client, "/jobs/add", {"x": 20, "y": 22})
    wait_for_status(client, status_url, "started")

    worker.kill()  # SIGKILL to the whole process group: no clean-up, no acknowledgement
    assert queues.unacknowledged() == 1, "the job is taken, not acknowledged: Redis still has it"
    start("worker", " ready.", **slow)
    # kombu's default sweep would take about 100 s; this stage sweeps every second.
    done = wait_for_status(client, status_url, "succeeded", timeout=30)

    assert done["result"] == 42
    assert done["attempts"] == 2


@pytest.fixture(scope="class")
def prefork_worker(stage_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagedProcess]:
    """The Procfile's worker (its default pool, prefork), shared by the time-limit tests: 0.3 s a row."""
    env = {**stage_env, "REPORT_STEP_SECONDS": "0.3"}
    with procfile_process(STAGE, "worker", env, tmp_path_factory.mktemp("prefork")) as worker:
        worker.wait_for_output(" ready.", timeout=30)
        yield worker


class TestTimeLimitsInThePreforkPool:
    """One prefork worker, the Procfile's, for both tests: it lives as long as this class."""

    def test_a_report_stops_cleanly_at_its_soft_time_limit_in_the_prefork_pool(
        self, prefork_worker: ManagedProcess, client: httpx.Client
    ) -> None:
        status_url = enqueue(client, "/jobs/report", {"rows": [1] * 10})  # 3 s of work, a 1 s soft limit

        failed = wait_for_status(client, status_url, "failed", timeout=20)

        assert re.fullmatch(
            r"ReportTimedOut: stopped at the soft time limit \(1 s\) after [1-9] of 10 rows", failed["error"]
        ), failed["error"]
        (letter,) = client.get("/dead-letters").json()
        assert letter["job_id"] == failed["job_id"]

    def test_the_time_limits_are_the_workers_whatever_the_api_process_has(
        self, prefork_worker: ManagedProcess, start_api, stage_env: dict[str, str]
    ) -> None:
        # An API with the default limits (30 s and 40 s); the worker has 1 s and 2 s.
        defaults = {"REPORT_SOFT_TIME_LIMIT_SECONDS": "30", "REPORT_TIME_LIMIT_SECONDS": "40"}
        api = start_api(f"{STAGE}.main:app", **{**stage_env, **defaults})
        with httpx.Client(base_url=api.base_url, timeout=10) as client:
            status_url = enqueue(client, "/jobs/report", {"rows": [1] * 10})
            failed = wait_for_status(client, status_url, "failed", timeout=20)

        assert failed["error"].startswith("ReportTimedOut: stopped at the soft time limit (1 s) after ")

    def test_a_report_that_ignores_its_soft_limit_is_killed_at_the_hard_one_and_the_worker_goes_on(
        self, prefork_worker: ManagedProcess, client: httpx.Client
    ) -> None:
        stubborn = enqueue(
            client, "/jobs/report", {"rows": [1] * 20, "stop_at_soft_limit": False}
        )  # 6 s, a 2 s hard limit

        failed = wait_for_status(client, stubborn, "failed", timeout=20)
        next_job = enqueue(client, "/jobs/add", {"x": 1, "y": 2})
        done = wait_for_status(client, next_job, "succeeded", timeout=20)

        assert failed["error"].startswith("TimeLimitExceeded: ")
        assert done["result"] == 3
        assert f"Hard time limit (2.0s) exceeded for stage3_retries.tasks.generate_report[{failed['job_id']}]" in (
            prefork_worker.output()
        )
        # The hard limit reports the failure twice (task_failure fires twice); the dead letter is kept once.
        assert [letter["job_id"] for letter in client.get("/dead-letters").json()] == [failed["job_id"]]


@pytest.mark.parametrize("pool", ["solo", "threads"])
def test_the_solo_and_threads_pools_ignore_both_time_limits(
    stage: CeleryStage, client: httpx.Client, pool: str
) -> None:
    # The same limits (1 s soft, 2 s hard) and 2.4 s of work: in these pools the report just finishes.
    status_url = enqueue(client, "/jobs/report", {"rows": [1] * 12})

    with stage.worker(pool=pool):
        done = wait_for_status(client, status_url, "succeeded", timeout=20)

    assert done["result"]["rows"] == 12


def test_beat_sends_the_digest_of_dead_letters_and_keeps_its_schedule_file_out_of_the_tree(
    start: Callable[..., ManagedProcess], smtp_sink: SmtpSink, queues: Queues
) -> None:
    every_second = {"DIGEST_INTERVAL_SECONDS": "1", "ADMIN_EMAIL": "ops@example.com"}
    worker = start("worker", **every_second)  # both start at once, as honcho starts them
    beat = start("beat", "beat: Starting...", **every_second)
    worker.wait_for_output(" ready.", timeout=30)

    digest = smtp_sink.wait_for_messages(1, timeout=20)[0]

    assert digest.rcpt_tos == ["ops@example.com"]
    assert digest.subject == "Dead letters: 0 waiting"
    assert "Scheduler: Sending due task send-digest (stage3_retries.tasks.send_digest)" in beat.output()
    assert not list(REPO_ROOT.glob("celerybeat-schedule*")), "beat wrote its schedule into the working tree"
    # Beat stops first, and the worker takes what it sent last: stopped together, a digest sent
    # after the worker's last fetch would be left in the queue.
    beat.stop()
    queues.wait_until_done()


def test_honcho_runs_the_whole_stage_from_its_procfile_in_one_terminal(
    stage_env: dict[str, str], smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    port = free_port()
    env = procfile_env({**stage_env, "SMTP_HOST": smtp_sink.host, "SMTP_PORT": str(smtp_sink.port)})
    honcho = ManagedProcess(
        "honcho", [f"{VENV_BIN}/honcho", "-f", f"{STAGE}/Procfile", "start", "-p", str(port)], env=env, log_dir=tmp_path
    )
    with honcho:
        honcho.wait_for_output(" ready.", timeout=30)
        honcho.wait_for_output("beat: Starting...", timeout=30)
        honcho.wait_for_http(f"http://127.0.0.1:{port}/health", timeout=30)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            status_url = enqueue(client, "/users/8/welcome")
            wait_for_status(client, status_url, "succeeded", timeout=20)
            assert job_status(client, status_url)["attempts"] == 1
        smtp_sink.wait_for_messages(1)

        honcho.popen.send_signal(signal.SIGINT)  # Ctrl-C
        wait_for_exit(honcho, timeout=20)

    output = honcho.output()
    for process_type in ("api.1", "worker.1", "beat.1"):
        assert re.search(rf"^\d\d:\d\d:\d\d {re.escape(process_type)}\s+\| ", output, re.MULTILINE), process_type
