"""The Redis commands per job come from INFO commandstats; checked against a real Redis of their own.

INFO commandstats counts for the whole server, so these tests start a server of
their own rather than share the suite's.
"""

from collections import Counter
from collections.abc import Iterator

import pytest
import redis

from bench.commandstats import (
    commands_from_info,
    commandstats_delta,
    per_job,
    read_commandstats,
    reset_commandstats,
)
from tutorial.redis_server import start_redis_server


@pytest.fixture(scope="module")
def client() -> Iterator[redis.Redis]:
    with start_redis_server() as service:
        connection = redis.Redis.from_url(service.url)
        connection.ping()  # connect now, so the handshake is not in any test's counts
        yield connection
        connection.close()


def test_delta_counts_each_command_run_between_two_readings(client):
    reset_commandstats(client)
    before = read_commandstats(client)
    client.lpush("queue", "a", "b")
    client.lpush("queue", "c")
    client.brpop(["queue"], timeout=1)
    after = read_commandstats(client)
    assert commandstats_delta(before, after) == Counter({"lpush": 2, "brpop": 1})


def test_delta_leaves_out_the_measuring_commands(client):
    reset_commandstats(client)  # CONFIG RESETSTAT itself is counted by Redis
    before = read_commandstats(client)
    client.info()
    read_commandstats(client)
    after = read_commandstats(client)
    assert commandstats_delta(before, after) == Counter()


def test_delta_subtracts_the_commands_the_benchmark_sent_itself(client):
    reset_commandstats(client)
    before = read_commandstats(client)
    client.rpush("bench:done", "0 1.0 2.0")  # a task's record
    client.llen("bench:done")  # the benchmark's poll
    client.lpush("queue", "job")  # the system's own work
    after = read_commandstats(client)
    delta = commandstats_delta(before, after, not_counted={"rpush": 1, "llen": 1})
    assert delta == Counter({"lpush": 1})


def test_delta_refuses_to_subtract_more_than_redis_counted(client):
    reset_commandstats(client)
    before = read_commandstats(client)
    client.llen("queue")
    after = read_commandstats(client)
    with pytest.raises(ValueError, match="more commands subtracted"):
        commandstats_delta(before, after, not_counted={"llen": 2})


def test_commands_from_info_strips_the_prefix_and_keeps_subcommands():
    info = {"cmdstat_lpush": {"calls": 3, "usec": 5}, "cmdstat_client|setinfo": {"calls": 2, "usec": 1}}
    assert commands_from_info(info) == Counter({"lpush": 3, "client|setinfo": 2})


def test_per_job_divides_all_commands_by_the_jobs():
    assert per_job(Counter({"lpush": 10, "sadd": 5}), 10) == 1.5
