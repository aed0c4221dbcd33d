"""The learner's commands as a learner runs them: demo, services, doctor."""

from __future__ import annotations

import os
import shutil
import signal
import smtplib
import sys
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import httpx
import psutil
import pytest
import redis

from tutorial import demo as demo_module
from tutorial.processes import REPO_ROOT, ManagedProcess, free_port, python_command, wait_for_exit
from tutorial.readmes import parse_readme
from tutorial.redis_server import RedisService, ping, start_redis_server, with_database
from tutorial.waiting import wait_until


def tagged_env(**extra: str) -> tuple[dict[str, str], str]:
    """An environment with a unique tag: every process started from it inherits the tag."""
    tag = uuid.uuid4().hex
    return {**os.environ, "TUTORIAL_TEST_TAG": tag, **extra}, tag


def processes_with_tag(tag: str) -> list[str]:
    found = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        try:
            if process.environ().get("TUTORIAL_TEST_TAG") == tag and process.status() != psutil.STATUS_ZOMBIE:
                found.append(f"{process.pid}: {' '.join(process.info['cmdline'] or [])}")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def assert_nothing_left_behind(tag: str) -> None:
    wait_until(
        lambda: not processes_with_tag(tag), timeout=10, what="no process left", seen=lambda: processes_with_tag(tag)
    )


@pytest.fixture
def no_redis_server_to_start(tmp_path: Path) -> dict[str, str]:
    """A PATH whose first redis-server cannot start, as on a machine with none."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stand_in = bin_dir / "redis-server"
    stand_in.write_text('#!/bin/sh\necho "a stand-in: no redis-server can start here" >&2\nexit 1\n')
    stand_in.chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


@pytest.fixture
def learners_redis() -> Iterator[RedisService]:
    """A Redis standing in for a learner's own, with their data in database 0, a Celery queue included."""
    with start_redis_server() as service, redis.Redis.from_url(service.url) as client:
        client.set("learner:data", "precious")
        client.rpush("celery", "a job of the learner's own")
        yield service


def everything_in(service: RedisService) -> dict[int, dict[bytes, bytes]]:
    """Every key of every database that has one, with its value: {0: {b"learner:data": b"<dumped value>"}}."""
    with redis.Redis.from_url(service.url) as client:
        databases = [int(name.removeprefix("db")) for name in client.info("keyspace")]
    found = {}
    for database in databases:
        with redis.Redis.from_url(with_database(service.url, database)) as client:
            found[database] = {key: client.dump(key) for key in client.scan_iter()}
    return found


STAGE1_README = REPO_ROOT / "stage1_background_tasks" / "README.md"


def test_the_demo_tells_a_stage_by_running_its_readme_and_leaves_no_process_and_no_key_behind(
    tmp_path: Path, learners_redis: RedisService
) -> None:
    # The learner's Redis is named by REDIS_URL, with a result backend exported: the demo runs on its own.
    before = everything_in(learners_redis)
    env, tag = tagged_env(REDIS_URL=learners_redis.url, RESULT_BACKEND_URL=learners_redis.url)
    args = python_command("-m", "tutorial", "demo", "--stage", "1")
    with ManagedProcess("demo", args, env=env, log_dir=tmp_path) as demo:
        assert wait_for_exit(demo, timeout=50) == 0, demo.describe()
    told = demo.output()

    assert "Stage 1: stage1_background_tasks/README.md, every command run as you would run it" in told
    # The README's own words and commands, in its order, and what they printed (ports as the learner's).
    commands = [command.text for block in parse_readme(STAGE1_README) for command in block.commands]
    position = 0
    for command in commands:
        found = told.find(f"$ {command}\n", position)
        assert found != -1, f"`{command}` is not told after position {position}: {told}"
        position = found + 1
    assert "From the repository root, in three terminals" in told
    assert "HTTP/1.1 202 Accepted" in told and "localhost:8000" in told
    assert "[mail] to user42@example.com: 'Welcome!'" in told  # what terminal 1 printed meanwhile
    assert told.rstrip().endswith("Everything the demo started has been stopped. Next: make test")
    assert_nothing_left_behind(tag)
    assert everything_in(learners_redis) == before


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not on PATH")
def test_make_demo_with_args_tells_only_the_stage_it_names(tmp_path: Path) -> None:
    # A VENV of the test's own whose python is this one, marked installed: make installs nothing.
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (venv / "bin" / "python").chmod(0o755)
    (venv / ".installed").touch()
    env, tag = tagged_env()
    command = ["make", "--no-print-directory", "demo", f"VENV={venv}", "ARGS=--stage 1"]
    with ManagedProcess("make-demo", command, env=env, cwd=REPO_ROOT, log_dir=tmp_path / "logs") as demo:
        assert wait_for_exit(demo, timeout=50) == 0, demo.describe()
    told = demo.output()

    assert "Stage 1: stage1_background_tasks/README.md, every command run as you would run it" in told
    assert "Stage 2:" not in told and told.rstrip().endswith(
        "Everything the demo started has been stopped. Next: make test"
    )
    assert_nothing_left_behind(tag)


def test_ctrl_c_stops_the_demo_and_everything_it_started(tmp_path: Path) -> None:
    env, tag = tagged_env()
    demo = ManagedProcess("demo", python_command("-m", "tutorial", "demo"), env=env, log_dir=tmp_path)
    with demo:
        demo.wait_for_output("uvicorn stage1_background_tasks.main:app", timeout=30)
        demo.wait_for_output("(ready, and left running", timeout=30)
        assert any("uvicorn" in process for process in processes_with_tag(tag)), processes_with_tag(tag)
        os.kill(demo.pid, signal.SIGINT)
        # A shell shows 130 either way; CPython exits through SIGINT itself when the
        # interrupt landed inside an import, whatever the program returns.
        assert wait_for_exit(demo, timeout=20) in (130, -signal.SIGINT), demo.describe()
    assert "Interrupted: everything the demo started has been stopped." in demo.output()
    assert_nothing_left_behind(tag)


def test_a_demo_that_cannot_start_a_redis_says_why_and_leaves_no_process_behind(
    tmp_path: Path, no_redis_server_to_start: dict[str, str]
) -> None:
    env, tag = tagged_env(**no_redis_server_to_start)
    with ManagedProcess("demo", python_command("-m", "tutorial", "demo"), env=env, log_dir=tmp_path) as demo:
        assert wait_for_exit(demo, timeout=50) == 1, demo.describe()
    output = demo.output()
    assert "!! The demo runs each stage on a Redis of its own, and could not start one:" in output
    assert "`make doctor` says how to get a redis-server." in output
    assert_nothing_left_behind(tag)


def test_a_demo_whose_readme_fails_stops_there_naming_the_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    readme = tmp_path / "stage7_broken" / "README.md"
    readme.parent.mkdir()
    readme.write_text("Two commands.\n\n```console\n$ echo one\none\n$ echo two\nthree\n```\n")
    monkeypatch.setattr(demo_module, "stage_readmes", lambda: {7: readme})

    assert demo_module.run_demo() == 1
    told = capsys.readouterr()
    assert "$ echo one\none\n" in told.out and "$ echo two" not in told.out
    assert "!! The demo stopped in stage 7: " in told.err and "line 6: `echo two` printed something else" in told.err


def test_make_services_starts_redis_where_none_answers_and_catches_mail_and_webhooks(tmp_path: Path) -> None:
    redis_port, smtp_port, webhook_port = free_port(), free_port(), free_port()
    env, tag = tagged_env()
    env.pop("REDIS_URL", None)
    args = [
        "services",
        "--redis-port",
        str(redis_port),
        "--smtp-port",
        str(smtp_port),
        "--webhook-port",
        str(webhook_port),
    ]
    services = ManagedProcess("services", python_command("-m", "tutorial", *args), env=env, log_dir=tmp_path)
    with services:
        services.wait_for_output("Ctrl-C stops all", timeout=30)
        assert f"Redis             redis://127.0.0.1:{redis_port}/0  (started:" in services.output()
        # Not the stages' defaults: it says what to set, rather than "nothing to set".
        assert (
            f"  export REDIS_URL=redis://127.0.0.1:{redis_port}/0 SMTP_PORT={smtp_port} "
            f"WEBHOOK_URL=http://127.0.0.1:{webhook_port}/webhook\n"
        ) in services.output()
        assert "nothing to set" not in services.output()
        assert ping(f"redis://127.0.0.1:{redis_port}/0")

        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = "a@example.com", "b@example.com", "Hi"
        message.set_content("by hand")
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as smtp:
            smtp.send_message(message)
        httpx.post(f"http://127.0.0.1:{webhook_port}/webhook", json={"type": "x"}, timeout=10).raise_for_status()
        services.wait_for_output("[mail] to b@example.com: 'Hi'")
        services.wait_for_output('[webhook] POST /webhook {"type":"x"}')

        os.kill(services.pid, signal.SIGINT)
        assert wait_for_exit(services, timeout=20) == 0, services.describe()
    assert not ping(f"redis://127.0.0.1:{redis_port}/0")
    assert_nothing_left_behind(tag)


def test_make_services_uses_the_redis_that_already_answers(tmp_path: Path, private_redis: RedisService) -> None:
    env, _ = tagged_env()
    env.pop("REDIS_URL", None)
    args = ["services", "--redis-port", str(private_redis.port), "--smtp-port", "0", "--webhook-port", "0"]
    services = ManagedProcess("services", python_command("-m", "tutorial", *args), env=env, log_dir=tmp_path)
    with services:
        services.wait_for_output("Ctrl-C stops all", timeout=30)
        assert f"redis://localhost:{private_redis.port}/0  (already running)" in services.output()
    assert ping(private_redis.url)  # it was not ours to stop


def test_the_doctor_names_an_unreachable_redis_url_and_how_to_fix_it_without_its_password(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "REDIS_URL": f"redis://:s3cret@127.0.0.1:{port}/0"}
    doctor = ManagedProcess("doctor", python_command("-m", "tutorial", "doctor"), env=env, log_dir=tmp_path)
    with doctor:
        assert wait_for_exit(doctor, timeout=60) == 1
    assert f"FIX   REDIS_URL=redis://:**@127.0.0.1:{port}/0 does not answer" in doctor.output()
    assert "-> start that Redis, or `unset REDIS_URL`" in doctor.output()
    assert "s3cret" not in doctor.output()


def test_the_doctor_names_its_python_the_tested_versions_and_the_python_of_the_venv(tmp_path: Path) -> None:
    version = ".".join(map(str, sys.version_info[:3]))
    # The environment this suite runs in, as `make doctor VENV=...` names it.
    env = {**os.environ, "TUTORIAL_VENV": sys.prefix}
    doctor = ManagedProcess("doctor", python_command("-m", "tutorial", "doctor"), env=env, log_dir=tmp_path)
    with doctor:
        wait_for_exit(doctor, timeout=60)
    output = doctor.output()

    assert f"Python {version} ({sys.executable})" in output, output
    assert "the tests run on" in output and "3.11 and 3.13" in output, output
    # One way of counting, as make counts them before it installs: the lines that pin a version.
    pinned = sum("==" in line for line in (REPO_ROOT / "requirements.lock").read_text().splitlines())
    assert f"matches requirements.lock (its {pinned} packages, Python {version})" in output, output
    assert "was made with Python" not in output  # the same Python: nothing to say
