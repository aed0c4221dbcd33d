"""Read what the tasks recorded, and check that every job ran exactly once.

The ledger knows nothing of processes or trials: the runner drives those, and asks it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import redis

from bench.systems.noop import LEDGER_KEY


@dataclass(frozen=True)
class Run:
    """One run of the no-op task, as it recorded itself."""

    index: int
    enqueued_at: float
    ran_at: float

    @property
    def latency(self) -> float:
        """Seconds from the enqueue call to the task starting."""
        return self.ran_at - self.enqueued_at


def parse_run(record: bytes | str) -> Run:
    """A Run from the "<index> <enqueued_at> <ran_at>" text that record_run writes."""
    text = record.decode() if isinstance(record, bytes) else record
    index, enqueued_at, ran_at = text.split()
    return Run(int(index), float(enqueued_at), float(ran_at))


class JobsNotRunExactlyOnce(AssertionError):
    """Some jobs were lost, ran more than once, or were never sent: the run is wrong."""

    def __init__(self, system: str, lost: list[int], duplicated: dict[int, int], unexpected: list[int]):
        self.lost = lost
        self.duplicated = duplicated
        self.unexpected = unexpected
        parts = []
        if lost:
            parts.append(f"{len(lost)} lost (never ran): {_shorten(lost)}")
        if duplicated:
            runs = [f"{index} ran {count}x" for index, count in sorted(duplicated.items())]
            parts.append(f"{len(duplicated)} duplicated: {_shorten(runs)}")
        if unexpected:
            parts.append(f"{len(unexpected)} never sent but ran: {_shorten(unexpected)}")
        super().__init__(f"{system}: not every job ran exactly once: " + "; ".join(parts))


def _shorten(items: list, limit: int = 20) -> str:
    shown = ", ".join(str(item) for item in items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def check_every_job_ran_once(system: str, ran: Iterable[int], sent: int) -> None:
    """Raise JobsNotRunExactlyOnce unless the indices 0..sent-1 each ran exactly once."""
    counts = Counter(ran)
    lost = [index for index in range(sent) if counts[index] == 0]
    duplicated = {index: count for index, count in counts.items() if count > 1 and 0 <= index < sent}
    unexpected = sorted(index for index in counts if not 0 <= index < sent)
    if lost or duplicated or unexpected:
        raise JobsNotRunExactlyOnce(system, lost, duplicated, unexpected)


class Ledger:
    """The runs the tasks recorded, read by the benchmark, which counts the commands it sends itself.

    Those commands land in INFO commandstats like anybody's, so they are counted
    here and subtracted from what Redis reports.
    """

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.own_commands: Counter[str] = Counter()

    def count(self) -> int:
        self.own_commands["llen"] += 1
        return self.client.llen(LEDGER_KEY)

    def runs(self) -> list[Run]:
        self.own_commands["lrange"] += 1
        return [parse_run(record) for record in self.client.lrange(LEDGER_KEY, 0, -1)]

    def check_every_job_ran_once(self, system: str, sent: int) -> None:
        """Raise JobsNotRunExactlyOnce unless jobs 0..sent-1 are each recorded exactly once."""
        check_every_job_ran_once(system, (run.index for run in self.runs()), sent)
