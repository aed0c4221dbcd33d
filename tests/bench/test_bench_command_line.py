"""Choosing systems on the command line (raw Redis, the reference of every ratio, is always there),
and the worker each one starts."""

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from bench.cli import parse_args
from bench.ledger import Ledger
from bench.report import result_stem
from bench.runner import wait_for_runs
from bench.systems.catalog import (
    RAW_REDIS,
    SYSTEMS,
    System,
    redis_url_environment,
    select_systems,
)
from bench.systems.noop import REDIS_URL_ENV
from tutorial.environment import changed_environment
from tutorial.processes import REPO_ROOT, ManagedProcess, free_port
from tutorial.redis_server import RedisService, start_redis_server


def test_no_selection_means_every_system():
    assert select_systems(None) == list(SYSTEMS)


def test_raw_redis_is_added_to_a_selection_without_it():
    names = [system.name for system in select_systems("rq-simple, celery-solo")]
    assert names == [RAW_REDIS, "celery-solo", "rq-simple"]


def test_an_unknown_system_is_refused_with_the_known_ones_listed(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--systems", "sidekiq"])
    error = capsys.readouterr().err
    assert "unknown system(s) sidekiq" in error
    assert "dramatiq-threads" in error


REFERENCE_DIR = REPO_ROOT / "bench" / "reference"


def test_a_new_run_is_written_apart_from_the_reference_run_the_readme_cites():
    reference = REFERENCE_DIR / "2026-11-21-vm.json"
    assert reference.is_file()
    output_dir = parse_args([]).output_dir
    # A run on the reference's day and host: its files go to bench/results/, outside git.
    new_run = output_dir / f"{result_stem(json.loads(reference.read_text()))}.json"
    assert new_run.resolve() != reference.resolve()
    ignored = subprocess.run(["git", "check-ignore", "--quiet", str(new_run)], cwd=REPO_ROOT, timeout=30)
    assert ignored.returncode == 0, f"{new_run} would be committed"


QUEUE_SYSTEMS = [system for system in SYSTEMS if not system.runs_in_api_process]
# Where a library looks when it is not handed the URL (RQ_REDIS_URL for rq, CELERY_BROKER_URL even
# overrides the broker Celery is given in code), and REDIS_URL for good measure.
FALLBACK_VARIABLES = ("REDIS_URL", REDIS_URL_ENV, "RQ_REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND")


@pytest.fixture(scope="module")
def given_redis() -> Iterator[RedisService]:
    with start_redis_server() as service:
        yield service


@pytest.mark.parametrize("system", QUEUE_SYSTEMS, ids=lambda system: system.name)
def test_every_worker_takes_its_jobs_from_the_redis_url_it_is_given(
    system: System, given_redis: RedisService, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Every other place a worker could find a Redis points at a closed port: one that ignores the
    # given URL cannot take the job from anywhere (and never reaches a learner's Redis on 6379).
    closed = f"redis://127.0.0.1:{free_port()}/0"
    for name in FALLBACK_VARIABLES:
        monkeypatch.setenv(name, closed)
    admin = redis.Redis.from_url(given_redis.url)
    admin.flushdb()
    # As python -m bench does: the producer enqueues from this process, the worker is started.
    with changed_environment(redis_url_environment(given_redis.url)):
        producer = system.make_producer(given_redis.url)
        try:
            producer.enqueue(0, time.time())
        finally:
            producer.close()
        command = system.worker_command(given_redis.url)
        with ManagedProcess(system.name, command, log_dir=tmp_path) as worker:  # this environment, inherited
            wait_for_runs(Ledger(admin), system.label, 1, timeout=60, worker=worker)
            worker.kill()  # it has shown what it had to; a clean shutdown would only take time
    Ledger(admin).check_every_job_ran_once(system.label, 1)
    admin.close()
