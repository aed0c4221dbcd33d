"""The learner's commands as a learner runs them: demo, services, doctor."""

from __future__ import annotations

import os
import re
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

from tutorial.processes import REPO_ROOT, ManagedProcess, free_port, port_is_open, python_command, wait_for_exit
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


STORIES = {
    1: [
        "answer: 202",
        "e-mails received so far: 0",
        "Subject: Welcome!",
        "the receiver got: POST /webhook {'type': 'user.created', 'payload': {'user_id': 42}}",
        '"action": "welcome_email_sent"',
        "answer: 422, field ['path', 'user_id']",
    ],
    2: [
        "GET: queued (PENDING)",
        "result: 5",
        "12/12 succeeded",
        "result: {'rows': 12, 'sum': 107.0",
        "e-mail: to user42@example.com: 'Welcome!'",
        "answer: 404 {'detail': 'No job ",
        "worker: send_welcome_email",
    ],
    3: [
        "receiver: delivery 1 answered 503",
        "receiver: delivery 3 answered 200",
        "GET: succeeded after 3 attempts, result {'status_code': 200}",
        "GET: failed after 3 attempts: WebhookFailed:",
        "dead letter: stage3_retries.tasks.deliver_webhook [{'type': 'invoice.paid', 'payload': {'invoice': 7}}],",
        "replay: 202, a new job",
        "dead letters left: []",
        "a second replay: 404 No dead letter",
        "after the kill: started (STARTED), attempts 1",
        "unacknowledged in Redis: 1",
        "succeeded, result: 42 after 2 attempts",
    ],
    4: [
        "celery: queued (PENDING)",
        "rq: queued (queued)",
        "dramatiq: queued (queued)",
        "celery: succeeded (SUCCESS), result 5",
        "rq: succeeded (finished), result 5",
        "dramatiq: succeeded (succeeded), result 5",
        "celery: succeeded after 3 attempts; the receiver answered 503, 503, 200",
        "rq: succeeded after 3 attempts; the receiver answered 503, 503, 200",
        "dramatiq: succeeded after 3 attempts; the receiver answered 503, 503, 200",
        "thumbnail: 128x64 image/png",
        "answer: 415 The file is not a PNG, JPEG, GIF or WebP image",
        "files in UPLOAD_DIR: 1, as before",
        "answer: 404 {'detail': 'Not Found'}",
    ],
    5: [
        "welcome e-mail: succeeded in queue emails",
        "report: queued in queue reports: no worker takes that queue",
        '"workers":{"emails":1,"reports":0,"integrations":0,"default":0}',
        "Redis lists: {'reports': 1, 'reports:3': 1, 'reports:6': 2}",
        "the report worker received them in this order: high, normal, low, low",
        "they arrived at (seconds): 0.00, ",
        "GET /api/workers without credentials: 401",
        "consumes ['reports', 'default']",
        "answer: 202, X-Request-ID: demo-42",
        'API log: {"message": "job enqueued", "request_id": "demo-42"',
        '"request_id": "demo-42", "task_id": ',
        'metric: jobs_queue_workers{queue="integrations"} 1.0',
    ],
}


# What the tour says in a learner's Redis (it could not start one of its own), in every chapter that uses Redis.
KEPT_APART = [
    "The tour could not start a Redis of its own:",
    "The tour writes only to database 15, which is empty now and which no stage uses by default.",
    "When the tour ends, it deletes the keys its stages wrote there (job queues, job states, results);"
    " no other key, in this database or another, is changed.",
    "key(s) the tour wrote to database 15",
    "left the 1 other key(s) of database 15: the tour did not write them",
]


@pytest.fixture
def no_redis_server_to_start(tmp_path: Path) -> dict[str, str]:
    """A PATH whose first redis-server cannot start, as on a machine with none: the tour must use the learner's."""
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


def write_meanwhile(demo: ManagedProcess, learners_redis: RedisService) -> tuple[dict[bytes, bytes], int, bytes]:
    """Write as other clients would while the tour runs: a stage run by hand in database 0, and
    someone in the tour's own database. Returns database 0 as it then is, the tour's database, and
    the value written there."""
    demo.wait_for_output(" (REDIS_URL)\n", timeout=30)
    database = int(re.search(r"Redis: redis://\S+/(\d+) \(REDIS_URL\)", demo.output())[1])
    with redis.Redis.from_url(learners_redis.url) as learner:
        learner.set("learner:written-while-the-demo-ran", "precious too")
        learner.rpush("celery", "another job of the learner's own")
        learners_own = everything_in(learners_redis)[0]
    with redis.Redis.from_url(with_database(learners_redis.url, database)) as somebody:
        somebody.set("notes", "written while the demo ran")
        notes = somebody.dump("notes")
    assert "the tour wrote to database" not in demo.output(), "written before the tour's clean-up"
    return learners_own, database, notes


# Where a chapter runs in its test. Most machines can start a redis-server: there the tour runs on
# one of its own (stage 2's chapter shows it). Where none can, it keeps apart in the learner's
# Redis: the chapters of stages 3-5 show that, and that they leave none of their keys behind
# there (between them they write every kind of key stage 2 writes, and the rest).
IN_THE_LEARNERS_REDIS = {3, 4, 5}


@pytest.mark.parametrize(
    "stage", [pytest.param(stage, marks=[pytest.mark.long] if stage > 1 else []) for stage in sorted(STORIES)]
)
def test_the_demo_tells_the_story_of_a_stage_and_leaves_no_process_and_no_key_of_its_own_behind(
    stage: int, tmp_path: Path, learners_redis: RedisService, no_redis_server_to_start: dict[str, str]
) -> None:
    before = everything_in(learners_redis)
    kept_apart = stage in IN_THE_LEARNERS_REDIS
    env, tag = tagged_env(REDIS_URL=learners_redis.url, **(no_redis_server_to_start if kept_apart else {}))
    args = python_command("-m", "tutorial", "demo", "--stage", str(stage))
    with ManagedProcess("demo", args, env=env, log_dir=tmp_path) as demo:
        after = before
        if kept_apart:
            learners_own, database, notes = write_meanwhile(demo, learners_redis)
            after = {0: learners_own, database: {b"notes": notes}}
        assert wait_for_exit(demo, timeout=50) == 0, demo.describe()
    # The narration is wrapped to the terminal's width: compare words, not line breaks.
    told = " ".join(demo.output().split())
    for expected in [
        *STORIES[stage],
        *(KEPT_APART if kept_apart else []),
        "Everything the tour started has been stopped.",
    ]:
        assert " ".join(expected.split()) in told
    if stage == 2:
        assert "A Redis of the tour's own: none of your data is in it, and it is gone when the tour ends." in told
        assert not ping(re.search(r"Redis: (redis://\S+) \(started: ", demo.output())[1])
    assert_nothing_left_behind(tag)
    # The learner's data is as it was, with what others wrote meanwhile; none of the tour's keys is there.
    assert everything_in(learners_redis) == after


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
    told = " ".join(demo.output().split())

    assert all(" ".join(line.split()) in told for line in STORIES[1]), told
    assert STORIES[2][0] not in told, told
    assert_nothing_left_behind(tag)


def test_ctrl_c_stops_the_demo_and_everything_it_started(tmp_path: Path) -> None:
    env, tag = tagged_env()
    demo = ManagedProcess("demo", python_command("-m", "tutorial", "demo"), env=env, log_dir=tmp_path)
    with demo:
        demo.wait_for_output("API: http://127.0.0.1:", timeout=30)
        api_port = int(demo.output().split("API: http://127.0.0.1:")[1].split()[0])
        os.kill(demo.pid, signal.SIGINT)
        # A shell shows 130 either way; CPython exits through SIGINT itself when the
        # interrupt landed inside an import, whatever the program returns.
        assert wait_for_exit(demo, timeout=20) in (130, -signal.SIGINT), demo.describe()
    assert "Interrupted: everything the tour started has been stopped." in demo.output()
    assert not port_is_open("127.0.0.1", api_port)
    assert_nothing_left_behind(tag)


def test_a_failing_demo_says_why_and_leaves_no_process_behind(
    tmp_path: Path, no_redis_server_to_start: dict[str, str]
) -> None:
    # Stage 1 runs (and starts a server); stage 2 can start no Redis, and finds none at the REDIS_URL it was given.
    dead_url = f"redis://127.0.0.1:{free_port()}/0"
    env, tag = tagged_env(REDIS_URL=dead_url, **no_redis_server_to_start)
    with ManagedProcess("demo", python_command("-m", "tutorial", "demo"), env=env, log_dir=tmp_path) as demo:
        assert wait_for_exit(demo, timeout=50) == 1, demo.describe()
    output = demo.output()
    assert "Subject: Welcome!" in output
    assert f"!! The tour stopped: Redis is not reachable at {dead_url} (from REDIS_URL)" in output
    assert "Everything it started has been stopped. `make doctor` checks this machine." in output
    assert_nothing_left_behind(tag)


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
