"""The demo tour: every finished stage, one chapter each, then everything is stopped."""

from __future__ import annotations

import importlib
import sys
from contextlib import ExitStack

from tutorial.redis_server import RedisUnavailable
from tutorial.stopping import stop_cleanly_on_signals
from tutorial.tour import Tour, print_error
from tutorial.waiting import WaitTimeout

# (stage number, chapter module): add a line here when a stage is finished.
CHAPTERS = [
    (1, "tutorial.tour.stage1"),
    (2, "tutorial.tour.stage2"),
    (3, "tutorial.tour.stage3"),
    (4, "tutorial.tour.stage4"),
    (5, "tutorial.tour.stage5"),
]


def run_demo(stages: list[int] | None = None) -> int:
    stop_cleanly_on_signals()
    chosen = [(number, module) for number, module in CHAPTERS if not stages or number in stages]
    if not chosen:
        print_error(f"No finished stage among {stages}; finished: {[number for number, _ in CHAPTERS]}")
        return 2
    try:
        with ExitStack() as stack:
            tour = Tour(stack)
            for _, module in chosen:
                with tour.chapter_processes():
                    importlib.import_module(module).run(tour)
            tour.chapter("The end")
            tour.say("Stopping everything the tour started.")
    except KeyboardInterrupt:
        print_error("Interrupted: everything the tour started has been stopped.")
        return 130
    except (RedisUnavailable, WaitTimeout) as error:
        print_error(f"The tour stopped: {error}")
        print_error("Everything it started has been stopped. `make doctor` checks this machine.")
        return 1
    print("\nEverything the tour started has been stopped. Next: make test", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run_demo())
