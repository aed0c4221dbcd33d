"""One trial of one system: boot, enqueue, drain, Redis commands, idle latency, API impact, memory.

A trial of a queue system, in order:

1. boot: one job waits in the queue, the worker is started; its boot time runs
   from the start until that job has run;
2. enqueue and drain: the warm worker is frozen (SIGSTOP), the commandstats are
   reset, N jobs are enqueued one call at a time (timed), the worker is let go
   (SIGCONT) and drains them; the drain rate runs from the first to the last
   completion, so neither the boot nor the enqueueing is in it;
3. idle latency: M jobs, one every ``latency_spacing_s``, to the idle worker;
4. API impact: GET /ping at a fixed rate while idle, then while the worker drains
   a backlog (enqueued while frozen), then idle again;
5. the worker is stopped and every job must have run exactly once.

Peak memory is sampled from the worker's start to its stop. BackgroundTasks runs
the same steps where they make sense, with the API process as the worker.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis

from bench.commandstats import (
    commandstats_delta,
    per_job,
    read_commandstats,
    reset_commandstats,
    wait_for_quiet,
)
from bench.ledger import Ledger, Run
from bench.load import ping_latencies
from bench.memory import PeakMemory
from bench.plan import Plan
from bench.stats import percentile, rate
from bench.systems.catalog import Producer, System
from tutorial.processes import ManagedProcess
from tutorial.waiting import WaitTimeout, wait_until

BOOT_TIMEOUT_S = 60.0
MEGABYTE = 2**20


@dataclass
class Bench:
    """What every trial shares: the plan, the Redis, the API, and where workers log."""

    plan: Plan
    redis_url: str
    admin: redis.Redis  # the benchmark's own connection: FLUSHDB, RESETSTAT, INFO
    ledger: Ledger
    api: httpx.Client
    api_process: ManagedProcess
    worker_env: dict[str, str]
    log_dir: Path


@dataclass
class TrialResult:
    figures: dict[str, float | None] = field(default_factory=dict)
    commands: dict[str, dict[str, float]] = field(default_factory=dict)  # phase -> command -> per job
    counts: dict[str, int] = field(default_factory=dict)  # jobs and requests behind the figures


class WorkerStopped(RuntimeError):
    """The process that runs the jobs (a worker, or the API for BackgroundTasks) ended too early."""


def wait_for_runs(ledger: Ledger, system: str, total: int, timeout: float, worker: ManagedProcess) -> None:
    """Wait until ``total`` runs are recorded; if they never come, say which jobs are missing.

    ``worker`` is the process that runs the jobs: when it dies, waiting stops at once.
    """

    def all_ran() -> bool:
        if not worker.is_running():
            raise WorkerStopped(f"{system}: {worker.name} stopped before running {total} jobs. {worker.describe()}")
        return ledger.count() >= total

    try:
        wait_until(all_ran, timeout=timeout, what=f"{system} to run {total} jobs", seen=worker.describe)
    except WaitTimeout:
        # Loud and precise: which jobs never ran (or ran twice), not just "timed out".
        ledger.check_every_job_ran_once(system, total)
        raise


def drain_timeout(jobs: int) -> float:
    """Generous: a worker doing 5 jobs/s still fits; a stuck one fails instead of hanging."""
    return 30 + jobs / 5


def run_trial(bench: Bench, system: System) -> TrialResult:
    if system.runs_in_api_process:
        return run_background_tasks_trial(bench, system)
    return run_queue_trial(bench, system)


@contextmanager
def paused(process: ManagedProcess) -> Iterator[None]:
    """Freeze a worker's whole process group (SIGSTOP), and let it go on (SIGCONT) after.

    While frozen it takes nothing from the queue, so a backlog can be enqueued in
    full before a warm worker starts on it.
    """
    os.killpg(process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(process.pid, signal.SIGCONT)


def enqueue_timed(producer: Producer, first: int, count: int) -> tuple[float, list[float]]:
    """Enqueue jobs first..first+count-1 one call at a time: total seconds, and each call's."""
    call_seconds = []
    started = time.perf_counter()
    for index in range(first, first + count):
        call_started = time.perf_counter()
        producer.enqueue(index, time.time())
        call_seconds.append(time.perf_counter() - call_started)
    return time.perf_counter() - started, call_seconds


def send_at_fixed_spacing(send: Callable[[int], None], first: int, count: int, spacing_s: float) -> None:
    """Call ``send(index)`` for count indices, one every ``spacing_s`` seconds."""
    start = time.monotonic()
    for offset in range(count):
        time.sleep(max(0.0, start + offset * spacing_s - time.monotonic()))
        send(first + offset)


def runs_between(runs: list[Run], first: int, count: int) -> list[Run]:
    return [run for run in runs if first <= run.index < first + count]


def drain_figures(runs: list[Run], jobs: int) -> dict[str, float | None]:
    """The drain rate: jobs completed per second from the first completion to the last."""
    times = [run.ran_at for run in runs]
    return {"drain_rate": rate(jobs - 1, max(times) - min(times))}


def latency_figures(runs: list[Run]) -> dict[str, float]:
    latencies = [run.latency for run in runs]
    return {
        "idle_latency_p50_ms": percentile(latencies, 50) * 1000,
        "idle_latency_p99_ms": percentile(latencies, 99) * 1000,
    }


def commands_per_job(commands: Counter[str], jobs: int) -> dict[str, float]:
    return {name: count / jobs for name, count in commands.most_common()}


def backlog_size(plan: Plan, drain_rate: float | None) -> int:
    """A backlog that keeps this system busy for about one API window, within bounds."""
    wanted = (drain_rate or 0) * plan.api_window_s
    return int(min(max(wanted, plan.backlog_min), plan.backlog_max))


def measure_api_impact(
    bench: Bench,
    system: System,
    *,
    start_backlog: Callable[[], None],
    total_runs: int,
    worker: ManagedProcess,
) -> tuple[dict[str, float | None], dict[str, int]]:
    """The p99 of GET /ping while the backlog drains, divided by its p99 when idle.

    The idle p99 is taken over the requests of both idle windows, just before and
    just after the busy one, so a machine that got busier meanwhile shows up in it.
    """
    plan = bench.plan
    idle_requests = round(plan.api_rate_per_s * plan.api_window_s)

    def idle_window() -> list[float]:
        return ping_latencies(
            bench.api,
            rate_per_s=plan.api_rate_per_s,
            max_requests=idle_requests,
            max_seconds=plan.api_window_s * 3,
        )

    idle = idle_window()
    start_backlog()
    busy = ping_latencies(
        bench.api,
        rate_per_s=plan.api_rate_per_s,
        max_requests=idle_requests * 10,
        max_seconds=plan.api_window_s * 10,
        keep_going=lambda: bench.ledger.count() < total_runs,
    )
    wait_for_runs(bench.ledger, system.label, total_runs, drain_timeout(total_runs), worker)
    idle += idle_window()
    idle_p99 = percentile(idle, 99)
    busy_p99 = percentile(busy, 99) if busy else None
    figures = {
        "api_idle_p99_ms": idle_p99 * 1000,
        "api_busy_p99_ms": busy_p99 * 1000 if busy_p99 is not None else None,
        "api_impact": busy_p99 / idle_p99 if busy_p99 is not None else None,
    }
    return figures, {"api_idle_requests": len(idle), "api_busy_requests": len(busy)}


def run_queue_trial(bench: Bench, system: System) -> TrialResult:
    plan, ledger = bench.plan, bench.ledger
    result = TrialResult()
    bench.admin.flushdb()  # an empty queue and ledger, and no registries left by the last system
    producer = system.make_producer(bench.redis_url)
    worker = ManagedProcess(
        system.name, system.worker_command(bench.redis_url), env=bench.worker_env, log_dir=bench.log_dir
    )
    with ExitStack() as running:
        running.callback(producer.close)

        # 1. Boot: job 0 waits in the queue while the worker starts.
        producer.enqueue(0, time.time())
        started_at = time.time()
        running.enter_context(worker)
        memory = running.enter_context(PeakMemory(worker.pid))
        wait_for_runs(ledger, system.label, 1, BOOT_TIMEOUT_S, worker)
        result.figures["boot_s"] = ledger.runs()[0].ran_at - started_at

        # 2. Enqueue N jobs to the frozen worker, then time its drain.
        first, jobs = 1, plan.drain_jobs
        wait_for_quiet(bench.admin)  # job 0's last commands are not the enqueue's
        with paused(worker):
            reset_commandstats(bench.admin)
            before = read_commandstats(bench.admin)
            enqueue_seconds, call_seconds = enqueue_timed(producer, first, jobs)
            after_enqueue = read_commandstats(bench.admin)
        own_before = ledger.own_commands.copy()
        wait_for_runs(ledger, system.label, first + jobs, drain_timeout(jobs), worker)
        wait_for_quiet(bench.admin)  # the last job's bookkeeping after its record
        after_drain = read_commandstats(bench.admin)
        # Not the system's: the benchmark's polls, and the one RPUSH each no-op task records itself with.
        not_counted = ledger.own_commands - own_before + Counter({"rpush": jobs})
        enqueue_commands = commandstats_delta(before, after_enqueue)
        processing_commands = commandstats_delta(after_enqueue, after_drain, not_counted=not_counted)
        result.figures |= {
            "enqueue_rate": rate(jobs, enqueue_seconds),
            "enqueue_p50_ms": percentile(call_seconds, 50) * 1000,
            "enqueue_p99_ms": percentile(call_seconds, 99) * 1000,
            "enqueue_commands": per_job(enqueue_commands, jobs),
            "processing_commands": per_job(processing_commands, jobs),
        }
        result.commands = {
            "enqueue": commands_per_job(enqueue_commands, jobs),
            "processing": commands_per_job(processing_commands, jobs),
        }
        result.figures |= drain_figures(runs_between(ledger.runs(), first, jobs), jobs)

        # 3. Idle latency: one job at a time, at a fixed spacing.
        first += jobs
        spaced = plan.latency_jobs
        send_at_fixed_spacing(lambda index: producer.enqueue(index, time.time()), first, spaced, plan.latency_spacing_s)
        wait_for_runs(ledger, system.label, first + spaced, drain_timeout(spaced), worker)
        result.figures |= latency_figures(runs_between(ledger.runs(), first, spaced))

        # 4. API impact: a backlog enqueued to the frozen worker, drained while the API is watched.
        first += spaced
        backlog = backlog_size(plan, result.figures["drain_rate"])

        def start_backlog() -> None:
            with paused(worker):
                for index in range(first, first + backlog):
                    producer.enqueue(index, time.time())

        api_figures, api_counts = measure_api_impact(
            bench, system, start_backlog=start_backlog, total_runs=first + backlog, worker=worker
        )
        result.figures |= api_figures
        total = first + backlog
    # 5. The worker is stopped: a job run twice late would be in the ledger by now.
    counts = {"drain_jobs": jobs, "latency_jobs": spaced, "backlog_jobs": backlog, **api_counts}
    return finish_trial(result, system, ledger, memory, total=total, counts=counts)


def run_background_tasks_trial(bench: Bench, system: System) -> TrialResult:
    """BackgroundTasks: the API process is the worker; there is no broker, no enqueue call, no boot."""
    plan, ledger, api_process = bench.plan, bench.ledger, bench.api_process
    result = TrialResult()
    result.figures = dict.fromkeys(("enqueue_rate", "enqueue_p50_ms", "enqueue_p99_ms", "boot_s", "enqueue_commands"))
    bench.admin.flushdb()

    def schedule(first: int, count: int) -> None:
        bench.api.post("/enqueue", params={"first": first, "n": count}).raise_for_status()

    with PeakMemory(api_process.pid) as memory:
        # 2. Drain: one request schedules N tasks; they run after its response.
        first, jobs = 0, plan.drain_jobs
        reset_commandstats(bench.admin)
        before = read_commandstats(bench.admin)
        own_before = ledger.own_commands.copy()
        schedule(first, jobs)
        wait_for_runs(ledger, system.label, jobs, drain_timeout(jobs), api_process)
        wait_for_quiet(bench.admin)
        after_drain = read_commandstats(bench.admin)
        not_counted = ledger.own_commands - own_before + Counter({"rpush": jobs})
        processing_commands = commandstats_delta(before, after_drain, not_counted=not_counted)
        result.figures["processing_commands"] = per_job(processing_commands, jobs)
        result.commands = {"processing": commands_per_job(processing_commands, jobs)}
        result.figures |= drain_figures(runs_between(ledger.runs(), first, jobs), jobs)

        # 3. Idle latency: from add_task to the task's start, which comes after the response.
        first += jobs
        spaced = plan.latency_jobs
        send_at_fixed_spacing(lambda index: schedule(index, 1), first, spaced, plan.latency_spacing_s)
        wait_for_runs(ledger, system.label, first + spaced, drain_timeout(spaced), api_process)
        result.figures |= latency_figures(runs_between(ledger.runs(), first, spaced))

        # 4. API impact: the backlog runs inside the very process that answers /ping.
        first += spaced
        backlog = backlog_size(plan, result.figures["drain_rate"])
        api_figures, api_counts = measure_api_impact(
            bench,
            system,
            start_backlog=lambda: schedule(first, backlog),
            total_runs=first + backlog,
            worker=api_process,
        )
        result.figures |= api_figures
        total = first + backlog
    counts = {"drain_jobs": jobs, "latency_jobs": spaced, "backlog_jobs": backlog, **api_counts}
    return finish_trial(result, system, ledger, memory, total=total, counts=counts)


def finish_trial(
    result: TrialResult,
    system: System,
    ledger: Ledger,
    memory: PeakMemory,
    *,
    total: int,
    counts: dict[str, int],
) -> TrialResult:
    """Add the peak memory and the job counts, after checking that each of ``total`` jobs ran exactly once."""
    result.figures["peak_rss_mb"] = memory.peak_bytes / MEGABYTE
    ledger.check_every_job_ran_once(system.label, total)
    result.counts = {**counts, "jobs_checked": total}
    return result
