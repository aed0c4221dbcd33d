"""The statistics of the benchmark: percentiles of samples, and summaries of trials.

Percentiles use the nearest-rank definition: the p-th percentile is the smallest
sample that at least p % of the samples are less than or equal to. It is always
one of the measured values (no interpolation), and with fewer than 100 samples
the 99th percentile is simply the largest one.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(samples: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0 < p <= 100) of ``samples`` by the nearest-rank method."""
    if not samples:
        raise ValueError("a percentile of no samples is undefined")
    if not 0 < p <= 100:
        raise ValueError(f"p must be in (0, 100], not {p}")
    ordered = sorted(samples)
    rank = math.ceil(p / 100 * len(ordered))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Summary:
    """One figure over several trials: the median, and the range it moved in."""

    median: float
    min: float
    max: float
    trials: int

    def as_dict(self) -> dict[str, float | int]:
        return {"median": self.median, "min": self.min, "max": self.max, "trials": self.trials}


def summarize(per_trial: Sequence[float]) -> Summary:
    """Median, minimum and maximum of one figure measured once per trial."""
    if not per_trial:
        raise ValueError("a summary of no trials is undefined")
    return Summary(statistics.median(per_trial), min(per_trial), max(per_trial), len(per_trial))


def ratio(value: float | None, reference: float | None) -> float | None:
    """``value / reference``, or None when either is missing or the reference is 0."""
    if value is None or reference is None or reference == 0:
        return None
    return value / reference


def rate(count: int, seconds: float) -> float | None:
    """Events per second, or None when no time passed to divide by."""
    return count / seconds if seconds > 0 else None
