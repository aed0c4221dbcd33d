"""Each stage's docker-compose.yml runs the processes of its Procfile next to a healthy Redis.

Docker is not needed for the course (and not on every machine), so these tests read the
files instead of running them.
"""

from __future__ import annotations

import json
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


def load_compose(stage: str) -> dict:
    return yaml.safe_load((REPO / stage / "docker-compose.yml").read_text())


@pytest.mark.parametrize("stage", STAGES)
def test_every_published_port_is_on_this_machines_loopback_only(stage: str) -> None:
    published = {name: service.get("ports", []) for name, service in load_services(stage).items()}

    # "8000:8000" publishes on every address of the machine: anyone on the network reaches it.
    assert {
        name: ports for name, ports in published.items() if any(not p.startswith("127.0.0.1:") for p in ports)
    } == {}
    assert published["api"] == ["127.0.0.1:8000:8000"]


@pytest.mark.parametrize("stage", STAGES)
def test_redis_keeps_its_jobs_across_a_restart_and_never_evicts_them(stage: str) -> None:
    compose = load_compose(stage)
    redis = compose["services"]["redis"]

    # Every write in an append-only file, flushed each second: a killed Redis comes back with its queues.
    # noeviction: when memory is full, writes fail (a clear 503) instead of queued jobs vanishing.
    assert redis["command"] == [
        "redis-server",
        *("--appendonly", "yes", "--appendfsync", "everysec", "--maxmemory-policy", "noeviction"),
    ]
    assert "redis-data:/data" in redis["volumes"]  # the file outlives the container
    assert "redis-data" in compose["volumes"]


# The processes that read or write uploads: the API stores them, the workers that make thumbnails read them.
UPLOAD_PROCESSES = {
    "stage4_rq_dramatiq": {"api", "celery", "rq", "dramatiq"},
    "stage5_monitoring": {"api", "worker_reports"},  # make_thumbnail is a job of the reports queue
}


@pytest.mark.parametrize("stage", sorted(UPLOAD_PROCESSES))
def test_every_process_that_reads_or_writes_uploads_sees_the_same_upload_dir_on_one_volume(stage: str) -> None:
    compose = load_compose(stage)
    services = compose["services"]
    if stage == "stage5_monitoring":
        assert "-Q reports," in services["worker_reports"]["command"]

    upload_dirs = {services[name]["environment"]["UPLOAD_DIR"] for name in UPLOAD_PROCESSES[stage]}
    mounts = {name: dict(volume.split(":") for volume in services[name]["volumes"]) for name in UPLOAD_PROCESSES[stage]}

    assert upload_dirs == {"/var/tmp/uploads"}
    # A folder inside the volume, which the API makes itself (mode 700); a volume's own root takes the
    # owner and mode of the image's folder it is mounted on (/var/tmp: every user may write there).
    assert all(volumes.get("uploads") == "/var/tmp" for volumes in mounts.values()), mounts
    assert "uploads" in compose["volumes"]


@pytest.mark.parametrize("stage", STAGES)
def test_the_image_prints_its_logs_at_once_and_runs_the_api_by_default(stage: str) -> None:
    lines = (REPO / stage / "Dockerfile").read_text().splitlines()
    cmd = [line.removeprefix("CMD ") for line in lines if line.startswith("CMD ")]

    assert "ENV PYTHONUNBUFFERED=1" in lines
    assert len(cmd) == 1
    assert " ".join(json.loads(cmd[0])) == load_services(stage)["api"]["command"]


def test_the_stages_dockerfiles_differ_only_by_the_stage_name() -> None:
    dockerfiles = {stage: (REPO / stage / "Dockerfile").read_text().replace(stage, "<stage>") for stage in STAGES}

    assert len(set(dockerfiles.values())) == 1, dockerfiles


def test_docker_is_sent_nothing_that_git_is_told_to_keep_out_of_a_stage() -> None:
    ignored_by_docker = set((REPO / ".dockerignore").read_text().splitlines())
    secrets = [
        f"{gitignore.parent.name}/{line}"
        for gitignore in sorted(REPO.glob("stage*_*/.gitignore"))
        for line in gitignore.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    assert "stage5_monitoring/flower-credentials" in secrets  # the password the stage 5 README has you write
    assert [secret for secret in secrets if secret not in ignored_by_docker] == []
