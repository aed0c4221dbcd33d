"""`make services` with a Flower for stage 5: next to Redis, the mail catcher and the webhook receiver."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx

from tests.stage5.conftest import CREDENTIALS
from tutorial.processes import ManagedProcess, free_port, port_is_open, python_command, wait_for_exit

RUN_SERVICES = (
    "import sys; from tutorial.services import run_services; sys.exit(run_services({}, 0, 0, flower_port={}))"
)


def services_with_flower(env: dict[str, str], flower_port: int, tmp_path: Path) -> ManagedProcess:
    # run_services itself: `python -m tutorial services --flower` is its command line.
    code = RUN_SERVICES.format(free_port(), flower_port)
    return ManagedProcess("services", python_command("-c", code), env=env, log_dir=tmp_path)


def test_make_services_starts_flower_on_its_redis_with_the_credentials_of_flower_basic_auth(
    stage_env: dict[str, str], tmp_path: Path
) -> None:
    flower_port = free_port()
    env = {**os.environ, "REDIS_URL": stage_env["REDIS_URL"], "FLOWER_BASIC_AUTH": ":".join(CREDENTIALS)}
    with services_with_flower(env, flower_port, tmp_path) as services:
        services.wait_for_output("Ctrl-C stops all", timeout=30)
        flower = f"http://127.0.0.1:{flower_port}"
        assert f"Flower (stage 5)  {flower}" in services.output()
        assert httpx.get(f"{flower}/api/workers", timeout=10).status_code == 401
        assert httpx.get(f"{flower}/api/workers", auth=CREDENTIALS, timeout=10).status_code == 200

        os.kill(services.pid, signal.SIGINT)
        assert wait_for_exit(services, timeout=20) == 0, services.describe()
    assert not port_is_open("127.0.0.1", flower_port), "Flower was left running"


def test_make_services_with_flower_but_no_credentials_says_how_to_set_them(
    stage_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**os.environ, "REDIS_URL": stage_env["REDIS_URL"]}
    env.pop("FLOWER_BASIC_AUTH", None)
    with services_with_flower(env, free_port(), tmp_path) as services:
        assert wait_for_exit(services, timeout=20) == 1
    assert "Flower needs credentials: set FLOWER_BASIC_AUTH=user:password first" in services.output()
