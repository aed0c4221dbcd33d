"""Redis down, stalled or misconfigured: the API answers 503 saying which, within its deadline.

And the other side of it: any valid REDIS_URL works (a database number, a password,
a unix socket, rediss://), so a 503 never blames a Redis that is fine.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.conftest import RunningApi
from tests.job_api import enqueue, wait_for_status
from tutorial.processes import ManagedProcess, UvicornServer, free_port, python_command
from tutorial.redis_server import RedisService, find_redis_server_binary, start_redis_server
from tutorial.waiting import wait_until

# The API's deadline for any one Redis call in these tests (REDIS_TIMEOUT_SECONDS).
REDIS_TIMEOUT = 1.5
# A client that gives up well before two of those: an API that waits twice (or retries) fails the test.
CLIENT_DEADLINE = 1.9 * REDIS_TIMEOUT
A_JOB = "/jobs/3fa85f64-5717-4562-b3fc-2c963f66afa6"


def closed_url() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"


def answer_within_deadline(request: Callable[[httpx.Client], httpx.Response], base_url: str) -> httpx.Response:
    with httpx.Client(base_url=base_url, timeout=CLIENT_DEADLINE) as client:
        try:
            return request(client)
        except httpx.TimeoutException:
            pytest.fail(f"no answer within {CLIENT_DEADLINE:g}s: the API kept waiting for Redis")


@pytest.fixture(scope="module")
def stalled_redis() -> Iterator[RedisService]:
    """A Redis of this module's own that accepts connections but answers no command (CLIENT PAUSE)."""
    with start_redis_server() as service:
        with redis.Redis.from_url(service.url) as client:
            client.execute_command("CLIENT", "PAUSE", "120000", "ALL")
        yield service  # stopped at the end: a paused server cannot even be told to unpause


@pytest.fixture(scope="module")
def api_on_a_stalled_redis(
    stage_package: str, stage_env: dict[str, str], stalled_redis: RedisService, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """One API on the stalled Redis for the module's tests: they only ask it, and it keeps no state."""
    env = {**os.environ, **stage_env, "REDIS_URL": stalled_redis.url, "REDIS_TIMEOUT_SECONDS": str(REDIS_TIMEOUT)}
    with UvicornServer(f"{stage_package}.main:app", env=env, log_dir=tmp_path_factory.mktemp("stalled-redis")) as api:
        yield api.base_url


@pytest.fixture
def trouble_api(
    start_api: Callable[..., RunningApi], stage_package: str, stage_env: dict[str, str]
) -> Callable[..., RunningApi]:
    def start(**env: str) -> RunningApi:
        return start_api(
            f"{stage_package}.main:app", **{**stage_env, "REDIS_TIMEOUT_SECONDS": str(REDIS_TIMEOUT), **env}
        )

    return start


def test_enqueueing_without_redis_is_503_saying_it_is_not_reachable(trouble_api) -> None:
    url = closed_url()
    api = trouble_api(REDIS_URL=url)

    response = answer_within_deadline(lambda client: client.post("/jobs/add", json={"x": 2, "y": 3}), api.base_url)

    assert response.status_code == 503
    assert response.json() == {
        "detail": f"The job queue (Redis at {url}) is not reachable: is Redis running there, and is REDIS_URL right?"
    }
    api.process.wait_for_output("The cause: ConnectionError: Error 111 connecting to 127.0.0.1")


def test_asking_for_a_job_without_redis_is_503_too(trouble_api) -> None:
    api = trouble_api(REDIS_URL=closed_url())

    response = answer_within_deadline(lambda client: client.get(A_JOB), api.base_url)

    assert response.status_code == 503
    assert "is not reachable" in response.json()["detail"]


def test_a_broker_that_is_down_is_503_at_once_though_the_results_redis_answers(
    trouble_api, stage_env: dict[str, str], queues
) -> None:
    # The mark is written to the results Redis; only publishing fails. Celery would retry that
    # for seconds (and the seed's .delay() does): retry=False makes it fail at once.
    broker = closed_url()
    api = trouble_api(REDIS_URL=broker, RESULT_BACKEND_URL=stage_env["REDIS_URL"])

    response = answer_within_deadline(lambda client: client.post("/jobs/add", json={"x": 2, "y": 3}), api.base_url)

    assert response.status_code == 503
    assert response.json()["detail"].startswith(f"The job queue (Redis at {broker}) is not reachable")
    # The mark stays behind, harmless: nobody learned the job's id.
    assert len(queues.job_keys()) == 1


def test_a_queued_job_whose_broker_is_down_is_503_not_a_500_though_the_results_redis_answers(
    trouble_api, stage_env: dict[str, str], client: httpx.Client, queues
) -> None:
    # Its state is read from the results Redis; whether a worker consumes its queue, from the broker's.
    status_url = enqueue(client, "/jobs/add", {"x": 2, "y": 3})
    broker = closed_url()
    api = trouble_api(REDIS_URL=broker, RESULT_BACKEND_URL=stage_env["REDIS_URL"])

    response = answer_within_deadline(lambda other: other.get(status_url), api.base_url)

    assert response.status_code == 503
    assert response.json()["detail"].startswith(f"The job queue (Redis at {broker}) is not reachable")
    queues.redis.delete("celery")  # the job no worker is meant to run


@pytest.mark.parametrize(
    ("method", "path", "body"), [("POST", "/jobs/add", {"x": 2, "y": 3}), ("GET", A_JOB, None)], ids=["post", "get"]
)
def test_a_stalled_redis_is_503_within_the_redis_timeout(
    api_on_a_stalled_redis: str, stalled_redis: RedisService, method: str, path: str, body: dict | None
) -> None:
    response = answer_within_deadline(lambda client: client.request(method, path, json=body), api_on_a_stalled_redis)

    assert response.status_code == 503
    assert response.json() == {
        "detail": f"The job queue (Redis at {stalled_redis.url}) did not answer within {REDIS_TIMEOUT:g} s: "
        "try again later."
    }


def test_a_stalled_broker_is_503_within_the_redis_timeout_though_the_results_redis_answers(
    trouble_api, stalled_redis: RedisService, stage_env: dict[str, str]
) -> None:
    api = trouble_api(REDIS_URL=stalled_redis.url, RESULT_BACKEND_URL=stage_env["REDIS_URL"])

    response = answer_within_deadline(lambda client: client.post("/jobs/add", json={"x": 2, "y": 3}), api.base_url)

    assert response.status_code == 503
    assert "did not answer within" in response.json()["detail"]


def test_a_redis_error_that_is_not_about_reaching_it_is_reported_as_what_it_is(
    trouble_api, private_redis: RedisService
) -> None:
    # Redis answers, but has no database 99 (it has 16 unless configured otherwise).
    url = private_redis.url.removesuffix("/0") + "/99"
    api = trouble_api(REDIS_URL=url)

    response = answer_within_deadline(lambda client: client.post("/jobs/add", json={"x": 2, "y": 3}), api.base_url)

    assert response.status_code == 503
    assert response.json() == {
        "detail": f"The job queue (Redis at {url}) answered with an error: DB index is out of range"
    }
    api.process.wait_for_output("The cause: ResponseError: DB index is out of range")


def test_a_wrong_password_is_reported_as_what_it_is_not_as_unreachable(trouble_api, redis_with_password: str) -> None:
    url = redis_with_password.replace(":s3cret@", ":wrong@")
    api = trouble_api(REDIS_URL=url)

    response = answer_within_deadline(lambda client: client.post("/jobs/add", json={"x": 2, "y": 3}), api.base_url)

    assert response.status_code == 503
    assert response.json() == {
        "detail": f"The job queue (Redis at {url.replace(':wrong@', ':**@')}) answered with an error: "
        "invalid username-password pair or user is disabled."
    }
    api.process.wait_for_output("The cause: AuthenticationError: invalid username-password pair")


# Any valid REDIS_URL ------------------------------------------------------------------------------


@pytest.fixture
def redis_with_password() -> Iterator[str]:
    with start_redis_server() as service:
        with redis.Redis.from_url(service.url) as client:
            client.config_set("requirepass", "s3cret")
        yield f"redis://:s3cret@127.0.0.1:{service.port}/15"


@pytest.fixture
def redis_on_a_unix_socket(tmp_path: Path) -> Iterator[str]:
    binary = find_redis_server_binary()
    assert binary is not None, "the suite needs a redis-server (see README: Prerequisites)"
    socket_path = tmp_path / "redis.sock"
    args = [binary, "--port", "0", "--unixsocket", str(socket_path), "--save", "", "--appendonly", "no"]
    with ManagedProcess("redis-unix", [*args, "--dir", str(tmp_path)], log_dir=tmp_path):
        url = f"unix://{socket_path}?db=4"

        def answers() -> bool:
            try:
                with redis.Redis.from_url(url) as client:
                    return client.ping()
            except redis.ConnectionError:
                return False

        wait_until(answers, timeout=15, what=f"redis-server on {socket_path}")
        yield url


@pytest.mark.parametrize("kind", ["database 15", "a password", "a unix socket"])
def test_the_stage_works_with_any_valid_redis_url(
    kind: str,
    request: pytest.FixtureRequest,
    start_api,
    stage_package: str,
    stage_env: dict[str, str],
    tmp_path: Path,
) -> None:
    url = {
        "database 15": lambda: stage_env["REDIS_URL"].rsplit("/", 1)[0] + "/15",
        "a password": lambda: request.getfixturevalue("redis_with_password"),
        "a unix socket": lambda: request.getfixturevalue("redis_on_a_unix_socket"),
    }[kind]()
    env = {**stage_env, "REDIS_URL": url}
    worker_args = [
        "-m",
        "celery",
        "-A",
        stage_package,
        "worker",
        "--pool=solo",
        "--without-mingle",
        "--without-gossip",
    ]
    worker = ManagedProcess("worker", python_command(*worker_args), env={**os.environ, **env}, log_dir=tmp_path)

    with worker:  # started first: it gets ready while the API starts
        api = start_api(f"{stage_package}.main:app", **env)
        with httpx.Client(base_url=api.base_url, timeout=10) as client:
            status_url = enqueue(client, "/jobs/add", {"x": 2, "y": 3})
            done = wait_for_status(client, status_url, "succeeded", timeout=30)

    assert done["result"] == 5
    with redis.Redis.from_url(url) as where:
        assert where.exists(f"celery-task-meta-{done['job_id']}")
        where.flushdb()


def test_a_rediss_url_turns_on_tls_for_the_broker_and_the_results(stage_package: str) -> None:
    # No TLS server here: this checks the configuration Celery insists on (without it, using the
    # result backend raises "A rediss:// URL must have parameter ssl_cert_reqs ...").
    script = (
        f"import {stage_package} as s; app = s.celery_app; app.backend; "
        "print(app.conf.broker_use_ssl, app.conf.redis_backend_use_ssl)"
    )
    env = {**os.environ, "REDIS_URL": "rediss://:pw@redis.example.com:6380/0"}
    done = subprocess.run(python_command("-c", script), env=env, capture_output=True, text=True, timeout=60)

    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["{'ssl_cert_reqs':", "<VerifyMode.CERT_REQUIRED:", "2>}"] * 2
