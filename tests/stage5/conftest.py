"""Stage 5 fixtures: the stage's four queues, its processes started from its Procfile, and quick
retries and limits (the fixtures every Celery stage shares are in tests/celery_stage.py)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.celery_stage import CeleryStage, Queues, api_url, checked_queues, client, mail_server, stage  # noqa: F401 (fixtures)
from tests.procfile import procfile_starter, services_env
from tutorial.mail import SmtpSink
from tutorial.processes import ManagedProcess
from tutorial.redis_server import RedisService, with_database
from tutorial.webhooks import WebhookReceiver

STAGE = "stage5_monitoring"
# Stage 5 keeps its queues, results and dead letters in database 5 of the private Redis.
QUEUE_DB = 5
MAX_RETRIES = 2  # of every retried task in the tests: 3 attempts in all
QUEUE_NAMES = ("emails", "reports", "integrations", "default")
# Celery on Redis keeps a list per queue and priority step: "reports" (high), "reports:3", "reports:6".
PRIORITY_SUFFIXES = {"high": "", "normal": ":3", "low": ":6"}
CREDENTIALS = ("monitor", "tests-only-password")
# promtool comes with Prometheus; CI installs it (.ci/run), a learner's machine may not have it.
needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None,
    reason="promtool is not on PATH: `make doctor` says how to install it (Debian/Ubuntu: apt install prometheus)",
)


@pytest.fixture(scope="session")
def stage_env(private_redis: RedisService, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of every stage-5 process in the tests: quick tasks and retries, the private Redis."""
    return {
        "REDIS_URL": with_database(private_redis.url, QUEUE_DB),
        "UPLOAD_DIR": str(tmp_path_factory.mktemp("uploads")),
        "ADD_DELAY_SECONDS": "0",
        "REPORT_STEP_SECONDS": "0.2",
        "WEBHOOK_MAX_RETRIES": str(MAX_RETRIES),
        "EMAIL_MAX_RETRIES": str(MAX_RETRIES),
        "RETRY_BACKOFF_SECONDS": "0.05",
        "RETRY_BACKOFF_MAX_SECONDS": "5",
        "REPORT_SOFT_TIME_LIMIT_SECONDS": "1",
        "REPORT_TIME_LIMIT_SECONDS": "2",
        # One process per worker: a worker is one queue consumer that runs one job at a time.
        "WORKER_CONCURRENCY": "1",
        # Well under the 1 s that a server's readiness check waits for /health, also with a stalled Redis.
        "HEALTH_TIMEOUT_SECONDS": "0.5",
        # A killed worker drops out of /health within 2 s (each worker notes its queues every 0.4 s).
        "WORKER_NOTE_EXPIRY_SECONDS": "2",
    }


@pytest.fixture(scope="session")
def stage_package() -> str:
    return STAGE


@pytest.fixture(scope="session")
def fields_of_a_finished_job() -> dict[str, object]:
    """Stage 5 counts the attempts of every job (stage 3) and names its queue."""
    return {"attempts": 1, "queue": "default"}


@pytest.fixture(scope="session")
def queue_names() -> tuple[str, ...]:
    """The stage's queues, as /health names them (for stage 2's tests)."""
    return QUEUE_NAMES


class StageQueues(Queues):
    """Stage 5's database: the jobs waiting in any of its queues, at any priority."""

    def waiting(self) -> int:
        return sum(self.redis.llen(name) for name in waiting_lists())

    def waiting_in(self, queue: str, priority: str = "normal") -> int:
        return self.redis.llen(queue + PRIORITY_SUFFIXES[priority])

    def drop_waiting_jobs(self) -> None:
        """For a test that queues jobs no worker is meant to run."""
        self.redis.delete(*waiting_lists())


def waiting_lists() -> list[str]:
    return [queue + suffix for queue in QUEUE_NAMES for suffix in PRIORITY_SUFFIXES.values()]


@pytest.fixture(autouse=True)
def queues(stage_env: dict[str, str]) -> Iterator[StageQueues]:
    """Every test of the stage ends with its queues empty; then its database is flushed."""
    with checked_queues(stage_env["REDIS_URL"], StageQueues) as queues:
        yield queues


@pytest.fixture
def receiver(webhook_receiver: WebhookReceiver) -> WebhookReceiver:
    return webhook_receiver


@pytest.fixture
def point_webhooks_at(stage: CeleryStage, monkeypatch: pytest.MonkeyPatch):  # noqa: F811 (the fixture)
    """Point the in-process workers' WEBHOOK_URL at a URL (for example a failing path of the receiver)."""

    def point(url: str) -> None:
        monkeypatch.setattr(stage.settings, "webhook_url", url)

    return point


@pytest.fixture
def start(
    stage_env: dict[str, str], smtp_sink: SmtpSink, webhook_receiver: WebhookReceiver, tmp_path: Path
) -> Iterator[Callable[..., ManagedProcess]]:
    """Start a line of the Procfile with the tests' services; all are stopped together at the end."""
    with procfile_starter(STAGE, {**stage_env, **services_env(smtp_sink, webhook_receiver)}, tmp_path) as start:
        yield start


def metric_samples(text: str) -> dict[tuple[str, frozenset], float]:
    """{(sample name, its labels): value} of a Prometheus text exposition, read by prometheus-client's parser."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict[tuple[str, frozenset], float], name: str, **labels: str) -> float:
    """One sample's value; the sum over the labels not given (Flower's `worker`, for example); 0 if none."""
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= ls)
