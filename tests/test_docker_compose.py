"""Each stage's docker-compose.yml runs the processes of its Procfile next to a healthy Redis.

Docker is not needed for the course (and not on every machine), so these tests read the
files instead of running them.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from tests.procfile import procfile_lines

REPO = Path(__file__).resolve().parent.parent
STAGES = sorted(path.parent.name for path in REPO.glob("stage*_*/docker-compose.yml"))


def load_services(stage: str) -> dict:
    return yaml.safe_load((REPO / stage / "docker-compose.yml").read_text())["services"]


@pytest.mark.parametrize("stage", STAGES)
def test_compose_has_redis_with_a_health_check_and_every_process_of_the_procfile(stage: str) -> None:
    services = load_services(stage)

    assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert set(procfile_lines(stage)) <= set(services)


@pytest.mark.parametrize("stage", STAGES)
def test_the_stage_processes_wait_for_a_healthy_redis_and_use_it(stage: str) -> None:
    services = load_services(stage)

    for name in procfile_lines(stage):
        service = services[name]
        assert service["depends_on"]["redis"] == {"condition": "service_healthy"}, name
        assert urlsplit(service["environment"]["REDIS_URL"]).hostname == "redis", name
        build = service["build"]
        assert (REPO / stage / build["context"] / build["dockerfile"]).is_file(), name


@pytest.mark.parametrize("stage", STAGES)
def test_compose_starts_the_commands_of_the_procfile_and_the_readme(stage: str) -> None:
    services = load_services(stage)
    readme = (REPO / stage / "README.md").read_text()

    for name, command in procfile_lines(stage).items():
        if name == "api":  # the Procfile's port is honcho's $PORT; in a container it is 8000 on all addresses
            assert services["api"]["command"] == command.replace("--port $PORT", "--host 0.0.0.0 --port 8000")
        else:
            # Compose runs a command without a shell: the Procfile's $REDIS_URL stands there as the service's own.
            redis_url = services[name]["environment"]["REDIS_URL"]
            expected = re.sub(r"\$\{REDIS_URL(:-[^}]*)?\}|\$REDIS_URL", redis_url, command)
            assert services[name]["command"] == expected, name
            assert command in readme, f"{stage}/README.md does not show `{command}`"
