"""Two small helpers for the READMEs' commands: keep a job's id, and watch a job change state.

`job-id` reads what curl printed for a POST, shows it unchanged (on stderr, so the
terminal still shows it) and prints only the job's id, for the shell to keep:

    JOB=$(curl -s -X POST localhost:8000/jobs/add ... | .venv/bin/python -m tutorial job-id)
    curl localhost:8000/jobs/$JOB

`follow URL` asks for a job's status until the job ends and prints each new answer with
the time, so a state that lasts a second (`retrying`, `started`) is still seen:

    .venv/bin/python -m tutorial follow localhost:8000/jobs/$JOB
"""

from __future__ import annotations

import json
import re
import sys
import time
from typing import TextIO

# The states after which a job's status no longer changes (the job API's list, every stage).
ENDED = {"succeeded", "failed"}
# Long enough for every job of the READMEs; a job still waiting then is news (no worker?).
FOLLOW_TIMEOUT_SECONDS = 120.0
POLL_SECONDS = 0.1  # a state that lasts a few tenths of a second still shows


def job_id(answer: str, shown: TextIO) -> str | None:
    """The id in a POST's answer (curl's output, its headers too with -i), after showing the answer."""
    shown.write(answer if answer.endswith("\n") or not answer else answer + "\n")
    shown.flush()
    # With -i, the body comes after the last blank line (an upload may show "100 Continue" first).
    body = re.split(r"\r?\n\r?\n", answer.strip())[-1] if answer.startswith("HTTP/") else answer
    try:
        data = json.loads(body)
    except ValueError:
        return None
    found = data.get("job_id") if isinstance(data, dict) else None
    return found if isinstance(found, str) and found else None


def run_job_id() -> int:
    found = job_id(sys.stdin.read(), sys.stderr)
    if found is None:
        print("tutorial job-id: no job_id in this answer (was the job refused? see above)", file=sys.stderr)
        return 1
    print(found)
    return 0


def follow(url: str, *, timeout: float = FOLLOW_TIMEOUT_SECONDS, out: TextIO = sys.stdout) -> int:
    """Print the job's status each time it changes, with the time, until it ends (0) or cannot be read (1)."""
    import httpx  # here: `python -m tutorial doctor` imports this module on a bare Python

    url = url if "://" in url else f"http://{url}"
    last = None
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=10) as client:
        while True:
            try:
                answer = client.get(url)
            except httpx.HTTPError as error:
                print(f"could not reach {url}: {error} (is the API running?)", file=out, flush=True)
                return 1
            if answer.text != last:
                last = answer.text
                print(f"{time.strftime('%H:%M:%S')} {answer.text}", file=out, flush=True)
            if answer.status_code != 200:  # 404 for an id never issued, 503 for Redis trouble: shown above
                return 1
            try:
                status = answer.json().get("status")
            except (ValueError, AttributeError):
                print(f"{url} did not answer with a job's status", file=out, flush=True)
                return 1
            if status in ENDED:
                return 0
            if time.monotonic() > deadline:
                print(f"still {status} after {timeout:g} s: stopped following (is a worker running?)", file=out)
                return 1
            time.sleep(POLL_SECONDS)
