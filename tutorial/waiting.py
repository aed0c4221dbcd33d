"""Wait for an event with a deadline, and say what was seen when it does not come."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """A condition did not become true before its deadline.

    It is an AssertionError so that pytest shows it as a plain test failure.
    """


def wait_until(
    condition: Callable[[], T],
    *,
    timeout: float,
    what: str,
    seen: Callable[[], object] | None = None,
    interval: float = 0.05,
) -> T:
    """Poll ``condition`` until it returns something truthy, and return that.

    After ``timeout`` seconds, raise WaitTimeout naming ``what`` was awaited and,
    when ``seen`` is given, what it reports at that moment.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            message = f"waited {timeout:g}s for {what}"
            if seen is not None:
                message += f"; last seen: {seen()!r}"
            raise WaitTimeout(message)
        time.sleep(interval)
