"""The command line: ``python -m bench [--quick] [--systems a,b] [--redis-url URL]``."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from bench.ledger import JobsNotRunExactlyOnce
from bench.plan import FULL, QUICK
from bench.report import write_results
from bench.runner import WorkerStopped
from bench.session import run_benchmark
from bench.systems.catalog import SYSTEMS, select_systems
from tutorial.redis_server import RedisUnavailable
from tutorial.stopping import stop_cleanly_on_signals
from tutorial.waiting import WaitTimeout

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure raw Redis, Celery, RQ, Dramatiq and FastAPI BackgroundTasks on this machine.",
    )
    parser.add_argument("--quick", action="store_true", help="fewer, smaller trials: under a minute")
    parser.add_argument(
        "--systems",
        metavar="A,B",
        help="measure only these (raw-redis, the reference, is always added): "
        + ", ".join(system.name for system in SYSTEMS),
    )
    parser.add_argument("--trials", type=int, metavar="N", help="trials per system (default: 1 quick, 3 full)")
    parser.add_argument(
        "--redis-url",
        metavar="URL",
        help="measure on this Redis instead of a private one; its database is FLUSHed and its "
        "command statistics reset, so never point it at data you want to keep",
    )
    parser.add_argument(
        "--redraw",
        type=Path,
        metavar="RESULTS.json",
        help="measure nothing: write the table and the chart again from a results file, next to it",
    )
    parser.add_argument(
        "--output-dir", type=Path, default=RESULTS_DIR, help="where the .json, .md and .png go (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    if args.trials is not None and args.trials < 1:
        parser.error("--trials must be at least 1")
    try:
        args.selected = select_systems(args.systems)
    except ValueError as exc:
        parser.error(str(exc))
    return args


def stopped(message: str, exit_code: int, log_dir: Path) -> int:
    """Say why the run stopped, and where its logs are kept to find out more."""
    print(f"\n{message}\nThe logs of the API and of every worker are kept in {log_dir}", file=sys.stderr)
    return exit_code


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.redraw:
        results = json.loads(args.redraw.read_text())
        paths = write_results(results, args.redraw.parent)
        print(f"Written again from {args.redraw}: {paths.markdown}, {paths.chart}")
        return 0
    plan = QUICK if args.quick else FULL
    if args.trials:
        plan = replace(plan, trials=args.trials)
    # SIGTERM and SIGHUP unwind like Ctrl-C: every process the benchmark started is stopped.
    restore_signals = stop_cleanly_on_signals()
    log_dir = Path(tempfile.mkdtemp(prefix="bench-logs-"))
    try:
        results = run_benchmark(plan, args.selected, log_dir=log_dir, redis_url=args.redis_url)
    except KeyboardInterrupt:
        return stopped("interrupted: every process the benchmark started has been stopped", 130, log_dir)
    except JobsNotRunExactlyOnce as exc:
        return stopped(f"FAILED, the figures are not valid: {exc}", 1, log_dir)
    except (WorkerStopped, WaitTimeout, RedisUnavailable) as exc:
        return stopped(f"FAILED: {exc}", 1, log_dir)
    finally:
        restore_signals()
    shutil.rmtree(log_dir, ignore_errors=True)  # a run that succeeded needs no logs
    paths = write_results(results, args.output_dir)
    print()
    print(paths.markdown.read_text())
    print(f"Written in {results['duration_s']:.0f} s: {paths.json}, {paths.markdown}, {paths.chart}")
    return 0
