"""One short run of the cheapest system, end to end: a private Redis, the API, the files.

It checks that the harness runs and writes its results; it asserts no figure,
since those depend on the machine.
"""

import json

from bench.cli import main
from bench.plan import Plan
from bench.report import write_results
from bench.session import run_benchmark
from bench.systems.catalog import select_systems

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


def test_a_tiny_raw_redis_run_writes_json_markdown_and_chart(tmp_path):
    results = run_benchmark(TINY, select_systems("raw-redis"), say=lambda line: None)
    paths = write_results(results, tmp_path)

    saved = json.loads(paths.json.read_text())
    [raw] = saved["systems"]
    assert raw["every_job_ran_exactly_once"]
    assert raw["figures"]["drain_rate"]["ratio_to_raw_redis"] == 1.0
    assert set(saved["machine"]["libraries"]) >= {"celery", "rq", "dramatiq", "fastapi", "redis"}
    assert "| raw Redis (LPUSH/BRPOP) |" in paths.markdown.read_text()
    assert paths.chart.read_bytes().startswith(b"\x89PNG")
    assert paths.json.name.endswith("-smoke.json")

    paths.chart.unlink()
    assert main(["--redraw", str(paths.json)]) == 0
    assert paths.chart.is_file()
