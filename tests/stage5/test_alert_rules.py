"""The alert rules: valid Prometheus rules, each with unit tests beside it, run by promtool.

promtool comes with Prometheus (Debian's `prometheus` package has it); CI installs it (.ci/run),
and on a machine without it these tests are skipped, saying so (`make doctor` says how to get it).
"""

from __future__ import annotations

import subprocess

import yaml

from tests.stage5.conftest import needs_promtool
from tutorial.processes import REPO_ROOT

RULES = REPO_ROOT / "stage5_monitoring" / "alerts.yml"
RULE_TESTS = REPO_ROOT / "stage5_monitoring" / "alerts_test.yml"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)


@needs_promtool
def test_the_alert_rules_are_valid_prometheus_rules() -> None:
    checked = promtool("check", "rules", str(RULES))

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 8 rules found" in checked.stdout


@needs_promtool
def test_the_alert_rules_pass_their_unit_tests() -> None:
    tested = promtool("test", "rules", str(RULE_TESTS))

    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_has_a_unit_test_that_fires_it_and_one_where_it_stays_quiet() -> None:
    alerts = {
        rule["alert"]
        for group in yaml.safe_load(RULES.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    checks = [
        check for test in yaml.safe_load(RULE_TESTS.read_text())["tests"] for check in test.get("alert_rule_test", [])
    ]

    fired = {check["alertname"] for check in checks if check["exp_alerts"]}
    quiet = {check["alertname"] for check in checks if not check["exp_alerts"]}
    assert alerts == fired
    assert alerts == quiet


def test_the_compose_prometheus_scrapes_the_api_and_flower_and_loads_the_rules_and_only_loopback_is_published() -> None:
    compose = yaml.safe_load((REPO_ROOT / "stage5_monitoring" / "docker-compose.yml").read_text())["services"]
    config = yaml.safe_load((REPO_ROOT / "stage5_monitoring" / "prometheus.yml").read_text())

    targets = {job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]}
    assert targets == {"jobs-api": ["api:8000"], "flower": ["flower:5555"]}
    assert "--port 8000" in compose["api"]["command"]
    assert compose["flower"]["environment"]["FLOWER_ADDRESS"] == "0.0.0.0"  # inside its container, for Prometheus
    assert config["rule_files"] == ["alerts.yml"]
    assert set(compose["prometheus"]["volumes"]) == {
        "./prometheus.yml:/etc/prometheus/prometheus.yml:ro",
        "./alerts.yml:/etc/prometheus/alerts.yml:ro",
    }
    published = [port for service in compose.values() for port in service.get("ports", [])]
    assert published and all(port.startswith("127.0.0.1:") for port in published), published
    assert "${FLOWER_BASIC_AUTH:?" in compose["flower"]["environment"]["FLOWER_BASIC_AUTH"], "no password in the file"


def test_prometheus_refuses_a_scrape_of_more_samples_than_its_sample_limit() -> None:
    # Every label of the API comes from a short list, but a bug (or another exporter) could still
    # add series without end: over the limit the scrape fails whole, and ScrapeTargetDown fires.
    config = yaml.safe_load((REPO_ROOT / "stage5_monitoring" / "prometheus.yml").read_text())

    limits = {job["job_name"]: job.get("sample_limit") for job in config["scrape_configs"]}

    assert limits == {"jobs-api": 10_000, "flower": 10_000}


@needs_promtool
def test_the_compose_prometheus_config_is_valid() -> None:
    checked = promtool("check", "config", str(REPO_ROOT / "stage5_monitoring" / "prometheus.yml"))

    assert checked.returncode == 0, checked.stdout + checked.stderr
