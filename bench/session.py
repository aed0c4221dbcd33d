"""A whole benchmark run: a private Redis, the API, every system's trials, the summary.

Everything started here is stopped when the run ends, fails or is interrupted:
each process is entered into one ExitStack.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import redis
from kombu.utils.url import maybe_sanitize_url

from bench.figures import FIGURES
from bench.ledger import Ledger
from bench.machine import describe_machine
from bench.plan import Plan
from bench.runner import Bench, TrialResult, run_trial
from bench.stats import ratio, summarize
from bench.systems.catalog import RAW_REDIS, System, redis_url_environment
from tutorial.environment import changed_environment
from tutorial.processes import UvicornServer
from tutorial.redis_server import RedisUnavailable, ping, start_redis_server

API_START_TIMEOUT_S = 30.0

FAIRNESS = (
    "Every system runs the same no-op task (one RPUSH recording that it ran) on one Redis, "
    "with results not kept, retries off, per-job logging off (WARNING level), each library's default "
    "acknowledgement mode (stated per system) and JSON messages. Trials are interleaved: "
    "each round measures every system once, so a busy moment of the machine hits them alike."
)


@contextmanager
def benchmark_redis(redis_url: str | None, say: Callable[[str], None]) -> Iterator[tuple[str, str]]:
    """The Redis to measure on, and how it was found: a private server unless a URL is given."""
    if redis_url:
        shown = maybe_sanitize_url(redis_url)
        if not ping(redis_url):
            raise RedisUnavailable(f"Redis is not reachable at {shown} (from --redis-url)")
        say(
            f"WARNING: using {shown} as asked: the benchmark runs FLUSHDB on its "
            "database and CONFIG RESETSTAT on the server, over and over."
        )
        yield redis_url, f"given: {shown}"
        return
    with start_redis_server() as service:
        yield service.url, f"private, {service.source}"


def bench_api(env: dict[str, str], log_dir: Path) -> UvicornServer:
    """The bench API under uvicorn, without access log (its writes would be in every p99)."""
    return UvicornServer(
        "bench.api_app:app",
        env=env,
        log_dir=log_dir,
        ready_path="/ping",
        timeout=API_START_TIMEOUT_S,
        extra_args=("--no-access-log", "--log-level", "warning"),
    )


def run_benchmark(
    plan: Plan,
    systems: Sequence[System],
    *,
    log_dir: Path,
    redis_url: str | None = None,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run every trial of every system and return the results, ready to be written as JSON.

    Every process writes its log in ``log_dir``; the caller keeps or removes it.
    """
    started = time.monotonic()
    started_at = datetime.now().astimezone()
    trials: dict[str, list[TrialResult]] = {system.name: [] for system in systems}
    with ExitStack() as stack:
        url, redis_source = stack.enter_context(benchmark_redis(redis_url, say))
        stack.enter_context(changed_environment(redis_url_environment(url)))
        admin = redis.Redis.from_url(url)
        stack.callback(admin.close)
        admin.flushdb()
        worker_env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        api_process = stack.enter_context(bench_api(worker_env, log_dir))
        api = stack.enter_context(httpx.Client(base_url=api_process.base_url, timeout=10, trust_env=False))
        machine = describe_machine(admin)
        say(
            f"{plan.mode} run: {len(systems)} systems x {plan.trials} trials on {machine['cpu_model']}, "
            f"{machine['nproc']} CPUs; Redis {machine['redis_server']} ({redis_source})"
        )
        bench = Bench(plan, url, admin, Ledger(admin), api, api_process, worker_env, log_dir)
        for trial in range(1, plan.trials + 1):
            for system in systems:
                trial_started = time.monotonic()
                result = run_trial(bench, system)
                trials[system.name].append(result)
                took = time.monotonic() - trial_started
                say(f"  trial {trial}/{plan.trials}  {system.label:<34} {one_line(result)}  ({took:.1f} s)")
    return summarize_run(
        plan,
        systems,
        trials,
        machine=machine,
        redis_source=redis_source,
        started_at=started_at,
        duration_s=time.monotonic() - started,
    )


def one_line(result: TrialResult) -> str:
    """A progress line: the figures a learner watches first."""
    figures = result.figures

    def show(key: str, template: str) -> str:
        value = figures.get(key)
        return template.format(value) if value is not None else "-"

    return (
        f"drain {show('drain_rate', '{:.0f}/s')}, idle p99 {show('idle_latency_p99_ms', '{:.1f} ms')}, "
        f"API x{show('api_impact', '{:.1f}')}, {show('peak_rss_mb', '{:.0f} MB')}"
    )


def summarize_run(
    plan: Plan,
    systems: Sequence[System],
    trials: dict[str, list[TrialResult]],
    *,
    machine: dict[str, Any],
    redis_source: str,
    started_at: datetime,
    duration_s: float,
) -> dict[str, Any]:
    """Median, min and max of every figure per system, and its ratio to raw Redis's median."""
    summaries = {system.name: summarize_figures(trials[system.name]) for system in systems}
    reference = summaries.get(RAW_REDIS, {})
    systems_out = []
    for system in systems:
        figures = summaries[system.name]
        for key, summary in figures.items():
            if summary is not None:
                raw = reference.get(key)
                summary["ratio_to_raw_redis"] = ratio(summary["median"], raw["median"] if raw else None)
        results = trials[system.name]
        systems_out.append(
            {
                "name": system.name,
                "label": system.label,
                "settings": system.settings,
                "figures": figures,
                "commands_per_job": median_commands(results),
                "every_job_ran_exactly_once": True,  # else the run stopped with JobsNotRunExactlyOnce
                "jobs_checked": sum(result.counts["jobs_checked"] for result in results),
                "trials": [
                    {"figures": result.figures, "commands_per_job": result.commands, "counts": result.counts}
                    for result in results
                ],
            }
        )
    return {
        "benchmark": "background jobs: raw Redis, Celery, RQ, Dramatiq, FastAPI BackgroundTasks",
        "date": started_at.date().isoformat(),
        "started_at": started_at.isoformat(timespec="seconds"),
        "duration_s": round(duration_s, 1),
        "mode": plan.mode,
        "plan": plan.as_dict(),
        "machine": machine,
        "redis": redis_source,
        "fairness": FAIRNESS,
        "percentiles": "nearest rank: the smallest sample with at least p % of samples at or below it",
        "systems": systems_out,
    }


def summarize_figures(results: Sequence[TrialResult]) -> dict[str, dict[str, Any] | None]:
    """Each figure over the trials; None for a figure the system does not have."""
    out: dict[str, dict[str, Any] | None] = {}
    for figure in FIGURES:
        values = [result.figures[figure.key] for result in results if result.figures.get(figure.key) is not None]
        out[figure.key] = summarize(values).as_dict() if values else None
    return out


def median_commands(results: Sequence[TrialResult]) -> dict[str, dict[str, float]]:
    """Per phase and command, the median over trials of the calls per job."""
    out: dict[str, dict[str, float]] = {}
    for phase in sorted({phase for result in results for phase in result.commands}):
        names = {name for result in results for name in result.commands.get(phase, {})}
        per_name = {
            name: summarize([result.commands.get(phase, {}).get(name, 0.0) for result in results]).median
            for name in names
        }
        # A command seen in fewer than half the trials (a timer that fired once) has median 0: left out.
        kept = {name: count for name, count in per_name.items() if count > 0}
        out[phase] = dict(sorted(kept.items(), key=lambda item: (-item[1], item[0])))
    return out
