"""Small steps of the job API contract, shared by the tests of every stage that has it (2 and on)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from tutorial.waiting import wait_until


def enqueue(client: httpx.Client, path: str, body: dict[str, Any] | None = None) -> str:
    """POST a job, check the 202 answer of the contract, and return the job's status URL."""
    response = client.post(path, json=body)
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert set(accepted) == {"job_id", "status_url"}
    assert accepted["status_url"] == f"/jobs/{accepted['job_id']}"
    assert response.headers["Location"] == accepted["status_url"]
    return accepted["status_url"]


def job_status(client: httpx.Client, status_url: str) -> dict[str, Any]:
    response = client.get(status_url)
    assert response.status_code == 200, response.text
    return response.json()


def wait_for_status(
    client: httpx.Client, status_url: str, status: str, timeout: float = 10, seen: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Poll the job until its status is ``status``; every answer is appended to ``seen``."""
    return wait_for_answer(client, status_url, lambda job: job["status"] == status, repr(status), timeout, seen)


def wait_for_answer(
    client: httpx.Client,
    status_url: str,
    matches: Callable[[dict[str, Any]], bool],
    what: str,
    timeout: float = 10,
    seen: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Poll the job until ``matches(answer)``, and return that answer; every answer is appended to ``seen``."""
    seen = [] if seen is None else seen

    def reached() -> dict[str, Any] | None:
        seen.append(job_status(client, status_url))
        return seen[-1] if matches(seen[-1]) else None

    # Every 0.1 s: each poll is a request to a real API and Redis, and many tests poll at once.
    return wait_until(reached, timeout=timeout, what=f"{status_url} to be {what}", seen=lambda: seen[-3:], interval=0.1)
