"""How much to measure: the quick mode (under a minute) and the full mode (under ten)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Plan:
    mode: str
    trials: int  # every system is measured this many times, round-robin
    drain_jobs: int  # the backlog whose enqueue and drain are timed
    latency_jobs: int  # jobs sent one by one for the idle latency
    latency_spacing_s: float  # the fixed gap between those jobs
    api_rate_per_s: float  # GET /ping requests per second, one at a time
    api_window_s: float  # length of each idle window, and the aimed length of the busy one
    backlog_min: int  # bounds of the backlog drained while the API is watched
    backlog_max: int

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


QUICK = Plan(
    mode="quick",
    trials=1,
    drain_jobs=150,
    latency_jobs=10,
    latency_spacing_s=0.1,
    api_rate_per_s=100,
    api_window_s=0.5,
    backlog_min=50,
    backlog_max=5_000,
)

FULL = Plan(
    mode="full",
    trials=3,
    drain_jobs=1_000,
    latency_jobs=50,
    latency_spacing_s=0.1,
    api_rate_per_s=100,
    api_window_s=2.0,
    backlog_min=200,
    backlog_max=20_000,
)
