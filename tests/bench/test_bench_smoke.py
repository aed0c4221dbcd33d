"""One short run of the cheapest system, end to end: the API, a worker, the files.

No figure that depends on the machine is asserted. What does not depend on it is:
every job ran exactly once (read back from Redis here, not taken from the results),
and a bare Redis list costs one LPUSH and one BRPOP per job.
"""

import json
from collections import Counter
from pathlib import Path

import pytest
import redis

from bench.cli import main
from bench.ledger import Ledger
from bench.plan import Plan
from bench.report import result_stem
from bench.session import run_benchmark
from bench.systems.catalog import select_systems
from tutorial.processes import free_port
from tutorial.redis_server import start_redis_server

TINY = Plan(
    mode="smoke",
    trials=1,
    drain_jobs=20,
    latency_jobs=3,
    latency_spacing_s=0.02,
    api_rate_per_s=100,
    api_window_s=0.1,
    backlog_min=20,
    backlog_max=200,
)


def test_a_tiny_raw_redis_run_runs_every_job_once_and_counts_one_lpush_and_one_brpop(tmp_path: Path) -> None:
    # A server of the test's own, so the jobs' records can be read back after the run.
    with start_redis_server() as service:
        said: list[str] = []
        results = run_benchmark(
            TINY, select_systems("raw-redis"), log_dir=tmp_path / "logs", redis_url=service.url, say=said.append
        )
        client = redis.Redis.from_url(service.url)
        recorded = Counter(run.index for run in Ledger(client).runs())
        client.close()

    [raw] = results["systems"]
    [trial] = raw["trials"]
    counts = trial["counts"]
    # Job 0 (the boot), the drained, the spaced and the backlog jobs, each recorded exactly once.
    sent = 1 + TINY.drain_jobs + TINY.latency_jobs + counts["backlog_jobs"]
    assert TINY.backlog_min <= counts["backlog_jobs"] <= TINY.backlog_max
    assert recorded == Counter(range(sent))
    assert raw["jobs_checked"] == sent
    # The same on any machine; anything more would be the benchmark's own commands leaking in.
    assert raw["commands_per_job"] == {"enqueue": {"lpush": 1.0}, "processing": {"brpop": 1.0}}
    for key, summary in raw["figures"].items():
        assert summary is not None, key
        assert summary["min"] <= summary["median"] <= summary["max"], key
    assert counts["api_idle_requests"] > 0
    assert counts["api_busy_requests"] > 0
    assert set(results["machine"]["libraries"]) >= {"celery", "rq", "dramatiq", "fastapi", "redis"}
    assert said[-1].startswith("  trial 1/1  raw Redis (LPUSH/BRPOP)")

    # --redraw writes the table and the chart from the JSON: the one chart this test draws.
    saved = tmp_path / f"{result_stem(results)}.json"
    saved.write_text(json.dumps(results))
    assert saved.name.endswith("-smoke.json")
    assert main(["--redraw", str(saved)]) == 0
    assert json.loads(saved.read_text()) == results
    table = saved.with_suffix(".md").read_text()
    assert "| raw Redis (LPUSH/BRPOP) | 1.00 | 1.00 | lpush 1.00 | brpop 1.00 |" in table
    assert f"Every job ran exactly once: {sent:,} jobs checked" in table
    assert saved.with_suffix(".png").read_bytes().startswith(b"\x89PNG")


def test_a_run_that_fails_says_where_its_logs_are_and_keeps_them(capsys: pytest.CaptureFixture[str]) -> None:
    closed = f"redis://127.0.0.1:{free_port()}/0"
    assert main(["--systems", "raw-redis", "--redis-url", closed]) == 1
    error = capsys.readouterr().err
    assert f"FAILED: Redis is not reachable at {closed} (from --redis-url)" in error
    kept = Path(error.split("The logs of the API and of every worker are kept in ")[1].split()[0])
    assert kept.is_dir()
    kept.rmdir()  # empty: the run stopped before it started anything
