"""Every job must run exactly once, or the run fails loudly, naming the jobs."""

from collections.abc import Iterator

import pytest
import redis

from bench.ledger import JobsNotRunExactlyOnce, Ledger, check_every_job_ran_once, parse_run
from bench.runner import WorkerStopped, wait_for_runs
from bench.systems.noop import LEDGER_KEY, ledger_client, record_run
from tutorial.processes import ManagedProcess, python_command, wait_for_exit
from tutorial.redis_server import start_redis_server


@pytest.fixture(scope="module")
def ledger_redis() -> Iterator[redis.Redis]:
    with start_redis_server() as service:
        client = ledger_client(service.url)
        yield client
        client.close()


@pytest.fixture
def ledger(ledger_redis) -> Ledger:
    ledger_redis.delete(LEDGER_KEY)
    return Ledger(ledger_redis)


def test_completeness_check_accepts_every_job_once_in_any_order():
    check_every_job_ran_once("system", [2, 0, 3, 1], 4)


def test_completeness_check_names_a_lost_job():
    with pytest.raises(JobsNotRunExactlyOnce, match=r"1 lost \(never ran\): 2") as failure:
        check_every_job_ran_once("system", [0, 1, 3], 4)
    assert failure.value.lost == [2]
    assert failure.value.duplicated == {}


def test_completeness_check_names_a_duplicated_job():
    with pytest.raises(JobsNotRunExactlyOnce, match="1 duplicated: 1 ran 2x") as failure:
        check_every_job_ran_once("system", [0, 1, 1, 2], 3)
    assert failure.value.duplicated == {1: 2}
    assert failure.value.lost == []


def test_completeness_check_names_lost_and_duplicated_jobs_together():
    with pytest.raises(JobsNotRunExactlyOnce) as failure:
        check_every_job_ran_once("Celery, solo pool", [0, 0, 2], 3)
    message = str(failure.value)
    assert message.startswith("Celery, solo pool: not every job ran exactly once")
    assert "lost (never ran): 1" in message
    assert "0 ran 2x" in message


def test_completeness_check_names_a_job_that_was_never_sent():
    with pytest.raises(JobsNotRunExactlyOnce, match="never sent but ran: 7") as failure:
        check_every_job_ran_once("system", [0, 1, 7], 2)
    assert failure.value.unexpected == [7]


def test_completeness_check_shortens_a_long_list_of_lost_jobs():
    with pytest.raises(JobsNotRunExactlyOnce, match=r"980 more"):
        check_every_job_ran_once("system", [], 1000)


def test_a_record_gives_the_job_and_its_latency():
    run = parse_run(b"12 100.25 100.5")
    assert (run.index, run.enqueued_at, run.ran_at) == (12, 100.25, 100.5)
    assert run.latency == 0.25


def test_a_task_record_reads_back_as_a_run(ledger, ledger_redis):
    record_run(ledger_redis, 5, 1000.0)
    [run] = ledger.runs()
    assert run.index == 5
    assert run.enqueued_at == 1000.0
    assert run.ran_at > run.enqueued_at


def test_the_ledger_finds_a_lost_job_among_the_recorded_runs(ledger, ledger_redis):
    for index in (0, 2):
        record_run(ledger_redis, index, 1.0)
    with pytest.raises(JobsNotRunExactlyOnce, match=r"lost \(never ran\): 1"):
        ledger.check_every_job_ran_once("system", 3)


def test_waiting_for_runs_that_never_come_names_the_lost_job(ledger, ledger_redis, tmp_path):
    for index in (0, 2):
        record_run(ledger_redis, index, 1.0)
    idle = python_command("-c", "import time; time.sleep(60)")
    with (
        ManagedProcess("idle-worker", idle, log_dir=tmp_path) as worker,
        pytest.raises(JobsNotRunExactlyOnce, match=r"lost \(never ran\): 1"),
    ):
        wait_for_runs(ledger, "system", 3, timeout=0.2, worker=worker)


def test_waiting_stops_at_once_when_the_worker_has_died(ledger, tmp_path):
    worker = ManagedProcess("worker", python_command("-c", "print('boom')"), log_dir=tmp_path).start()
    wait_for_exit(worker, timeout=10)
    with pytest.raises(WorkerStopped, match="boom"):
        wait_for_runs(ledger, "system", 1, timeout=30, worker=worker)


def test_the_benchmark_counts_its_own_commands_to_subtract_them(ledger):
    ledger.count()
    ledger.count()
    ledger.runs()
    assert ledger.own_commands == {"llen": 2, "lrange": 1}
