"""The command line: ``python -m bench [--quick] [--systems a,b] [--redis-url URL]``."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from types import FrameType

from bench.ledger import JobsNotRunExactlyOnce, RunnerStopped
from bench.plan import FULL, QUICK
from bench.report import write_results
from bench.session import run_benchmark
from bench.systems.catalog import SYSTEMS, select_systems
from tutorial.redis_server import RedisUnavailable
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


def stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # The same unwinding as Ctrl-C: every process the benchmark started is stopped.
    raise KeyboardInterrupt


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
    previous_handler = signal.signal(signal.SIGTERM, stop_on_sigterm)
    try:
        results = run_benchmark(plan, args.selected, redis_url=args.redis_url)
    except KeyboardInterrupt:
        print("\ninterrupted: every process the benchmark started has been stopped", file=sys.stderr)
        return 130
    except JobsNotRunExactlyOnce as exc:
        print(f"\nFAILED, the figures are not valid: {exc}", file=sys.stderr)
        return 1
    except (RunnerStopped, WaitTimeout, RedisUnavailable) as exc:
        print(f"\nFAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
    paths = write_results(results, args.output_dir)
    print()
    print(paths.markdown.read_text())
    print(f"Written in {results['duration_s']:.0f} s: {paths.json}, {paths.markdown}, {paths.chart}")
    return 0
