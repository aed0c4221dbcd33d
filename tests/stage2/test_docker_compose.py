"""The stage's docker-compose.yml runs what the README documents, next to a healthy Redis.

Docker is not needed for the course, so this test reads the file instead of running it.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import yaml

STAGE = Path(__file__).resolve().parents[2] / "stage2_celery"
DOCUMENTED_WORKER_COMMAND = "celery -A stage2_celery worker --loglevel=INFO"


def load_services() -> dict:
    return yaml.safe_load((STAGE / "docker-compose.yml").read_text())["services"]


def test_compose_has_redis_with_a_health_check_an_api_and_a_worker() -> None:
    services = load_services()

    assert {"redis", "api", "worker"} <= set(services)
    assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]


def test_api_and_worker_wait_for_a_healthy_redis_and_use_it() -> None:
    services = load_services()

    for name in ("api", "worker"):
        service = services[name]
        assert service["depends_on"]["redis"] == {"condition": "service_healthy"}, name
        assert urlsplit(service["environment"]["REDIS_URL"]).hostname == "redis", name
        build = service["build"]
        assert (STAGE / build["context"] / build["dockerfile"]).is_file(), name


def test_compose_starts_the_documented_commands() -> None:
    services = load_services()
    readme = (STAGE / "README.md").read_text()

    assert services["worker"]["command"] == DOCUMENTED_WORKER_COMMAND
    assert DOCUMENTED_WORKER_COMMAND in readme
    assert services["api"]["command"].startswith("uvicorn stage2_celery.main:app ")
