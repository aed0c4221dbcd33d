"""Turn SIGTERM (and SIGHUP) into KeyboardInterrupt, so `with` blocks clean up on every way out."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from types import FrameType

STOPPING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def stop_cleanly_on_signals() -> Callable[[], None]:
    """From now on SIGTERM and SIGHUP unwind like Ctrl-C; returns a function that undoes it."""
    previous = {signum: signal.signal(signum, _interrupt) for signum in STOPPING_SIGNALS}

    def restore() -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    return restore


def print_error(text: str) -> None:
    """Why a command stopped, set apart from what it printed before."""
    print(f"\n!! {text}", file=sys.stderr, flush=True)
