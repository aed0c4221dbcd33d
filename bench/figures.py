"""The figures the benchmark reports, with their units and which way is better."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Figure:
    key: str
    label: str
    unit: str  # "x" for a ratio
    higher_is_better: bool


FIGURES: tuple[Figure, ...] = (
    Figure("enqueue_rate", "enqueue rate", "jobs/s", True),
    Figure("enqueue_p50_ms", "enqueue call p50", "ms", False),
    Figure("enqueue_p99_ms", "enqueue call p99", "ms", False),
    Figure("drain_rate", "drain rate", "jobs/s", True),
    Figure("boot_s", "worker boot", "s", False),
    Figure("enqueue_commands", "Redis commands per enqueue", "commands", False),
    Figure("processing_commands", "Redis commands per job processed", "commands", False),
    Figure("idle_latency_p50_ms", "idle latency p50", "ms", False),
    Figure("idle_latency_p99_ms", "idle latency p99", "ms", False),
    Figure("api_idle_p99_ms", "API p99, idle", "ms", False),
    Figure("api_busy_p99_ms", "API p99, while draining", "ms", False),
    Figure("api_impact", "API impact, busy p99 / idle p99", "x", False),
    Figure("peak_rss_mb", "peak worker RSS", "MB", False),
)

FIGURES_BY_KEY = {figure.key: figure for figure in FIGURES}
