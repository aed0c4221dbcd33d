"""Choosing systems on the command line; raw Redis, the reference of every ratio, is always there."""

import pytest

from bench.cli import parse_args
from bench.systems.catalog import RAW_REDIS, SYSTEMS, select_systems


def test_no_selection_means_every_system():
    assert select_systems(None) == list(SYSTEMS)


def test_raw_redis_is_added_to_a_selection_without_it():
    names = [system.name for system in select_systems("rq-simple, celery-solo")]
    assert names == [RAW_REDIS, "celery-solo", "rq-simple"]


def test_an_unknown_system_is_refused_with_the_known_ones_listed(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--systems", "sidekiq"])
    error = capsys.readouterr().err
    assert "unknown system(s) sidekiq" in error
    assert "dramatiq-threads" in error


def test_every_worker_command_is_filled_with_the_redis_url():
    for system in SYSTEMS:
        if system.runs_in_api_process:
            continue
        command = system.worker_command("redis://127.0.0.1:1234/0")
        assert not any("{redis_url}" in arg for arg in command), system.name
