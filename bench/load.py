"""A bounded request load on the API: one GET /ping at a time, at a fixed rate."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx


def ping_latencies(
    client: httpx.Client,
    *,
    rate_per_s: float,
    max_requests: int,
    max_seconds: float,
    keep_going: Callable[[], bool] = lambda: True,
) -> list[float]:
    """Send GET /ping every 1/rate seconds and return each response time, in seconds.

    Stops after ``max_requests``, after ``max_seconds``, or as soon as ``keep_going``
    says so, whichever comes first. One request at a time: when a response comes
    late, the next request goes at once rather than in a burst to catch up.
    """
    interval = 1 / rate_per_s
    deadline = time.monotonic() + max_seconds
    latencies: list[float] = []
    next_send = time.monotonic()
    while len(latencies) < max_requests and time.monotonic() < deadline and keep_going():
        started = time.perf_counter()
        response = client.get("/ping")
        latencies.append(time.perf_counter() - started)
        response.raise_for_status()
        next_send = max(next_send + interval, time.monotonic())
        time.sleep(max(0.0, next_send - time.monotonic()))
    return latencies
