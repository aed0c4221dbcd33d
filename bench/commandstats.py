"""Count the Redis commands a job costs, from ``INFO commandstats``.

Redis counts every command it runs, per command name, since the last
``CONFIG RESETSTAT``. Reading the counts before and after a phase and subtracting
gives what that phase sent, whoever sent it: the producer, the worker, its pool.
That is why the figure does not depend on the machine: a faster CPU runs the same
commands sooner, not fewer of them.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

import redis

# The benchmark's own measuring instruments: never part of a system's cost.
MEASURING_COMMANDS = frozenset({"info", "config"})


def reset_commandstats(client: redis.Redis) -> None:
    """Set every command counter of the server to zero (CONFIG RESETSTAT)."""
    client.config_resetstat()


def read_commandstats(client: redis.Redis) -> Counter[str]:
    """How many times each command ran since the last reset, e.g. {"lpush": 1000}.

    Redis 7 names subcommands "config|resetstat", Redis 6 just "config": both kept
    as Redis names them.
    """
    info: Mapping[str, Any] = client.info("commandstats")
    return commands_from_info(info)


def commands_from_info(info: Mapping[str, Any]) -> Counter[str]:
    """The call counts of a parsed ``INFO commandstats`` reply, keyed by command name."""
    calls: Counter[str] = Counter()
    for key, stats in info.items():
        name = key.removeprefix("cmdstat_")
        calls[name] = int(stats["calls"])
    return calls


def commandstats_delta(
    before: Mapping[str, int],
    after: Mapping[str, int],
    *,
    not_counted: Mapping[str, int] | None = None,
) -> Counter[str]:
    """The commands run between two readings, without the benchmark's own.

    ``not_counted`` are commands the benchmark knows it sent meanwhile (its polls,
    the record each task writes); they are subtracted exactly. INFO and CONFIG
    calls are the measuring itself and are always left out. Commands whose count
    ends at zero are dropped.
    """
    delta: Counter[str] = Counter()
    for name in set(before) | set(after):
        if name.split("|")[0] in MEASURING_COMMANDS:
            continue
        delta[name] = after.get(name, 0) - before.get(name, 0)
    for name, count in (not_counted or {}).items():
        delta[name] -= count
    if any(count < 0 for count in delta.values()):
        raise ValueError(f"more commands subtracted than Redis counted: {dict(delta)}")
    return Counter({name: count for name, count in delta.items() if count})


def per_job(commands: Mapping[str, int], jobs: int) -> float:
    """The average number of commands per job."""
    return sum(commands.values()) / jobs


def wait_for_quiet(client: redis.Redis, *, quiet_s: float = 0.1, timeout: float = 3.0) -> bool:
    """Wait until Redis has run no command (but INFO) for ``quiet_s`` seconds; False if it never did.

    A worker goes on talking to Redis after a task's last line (RQ writes the job's
    end in ~50 commands, Celery removes it from its unacked set): waiting for quiet
    keeps those in the phase they belong to. A worker's idle polling (a BRPOP that
    times out every second) may be counted meanwhile; it is part of its cost.
    """

    def commands_so_far() -> int:
        return sum(commandstats_delta({}, read_commandstats(client)).values())

    deadline = time.monotonic() + timeout
    last = commands_so_far()
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        now = commands_so_far()
        if now == last:
            return True
        last = now
    return False
