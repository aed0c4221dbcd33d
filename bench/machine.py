"""What the figures were measured on: the machine, Python, Redis and every library's version."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil
import redis

LIBRARIES = (
    "fastapi",
    "starlette",
    "uvicorn",
    "httpx",
    "redis",
    "celery",
    "kombu",
    "billiard",
    "rq",
    "dramatiq",
    "matplotlib",
    "psutil",
)


def library_versions() -> dict[str, str]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def cpu_model() -> str:
    """The CPU's name: /proc/cpuinfo on Linux, sysctl on macOS, else what platform knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith(("model name", "Hardware", "Processor")) and ":" in line:
                return line.split(":", 1)[1].strip()
    if sys.platform == "darwin":
        try:
            out = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=5
            )
            if out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            pass
    return platform.processor() or platform.machine() or "unknown"


def usable_cpus() -> int:
    """The CPUs this process may run on (what ``nproc`` prints), which a container may limit."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def host_name() -> str:
    """The short host name, safe to put in a file name."""
    name = socket.gethostname().split(".")[0] or "host"
    return "".join(char if char.isalnum() or char in "-_" else "-" for char in name)


def describe_machine(client: redis.Redis) -> dict[str, Any]:
    server = client.info("server")
    return {
        "host": host_name(),
        "cpu_model": cpu_model(),
        "nproc": usable_cpus(),
        "cpu_count": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "load_average_at_start": [round(load, 2) for load in os.getloadavg()],
        "os": platform.platform(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "redis_server": server.get("redis_version", "unknown"),
        "libraries": library_versions(),
    }
