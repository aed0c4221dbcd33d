"""GET /health counts the workers of each queue, the API takes a client's request id, and Flower
will not start without credentials."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
import pytest

from tests.stage5.conftest import QUEUE_NAMES
from tutorial.processes import ManagedProcess, wait_for_exit
from tutorial.waiting import wait_until


def test_health_counts_the_workers_of_each_queue_and_drops_a_killed_one(
    start: Callable[..., ManagedProcess], client: httpx.Client
) -> None:
    def workers_when(condition: Callable[[dict[str, int]], bool], what: str) -> dict:
        answers: list[dict] = []

        def reached() -> dict | None:
            answers.append(client.get("/health").json())
            return answers[-1] if condition(answers[-1]["workers"]) else None

        return wait_until(reached, timeout=10, what=what, seen=lambda: answers[-1:])

    worker = start("worker_emails", " ready.")
    running = workers_when(lambda workers: workers["emails"] == 1, "the emails worker to be counted")
    assert running == {
        "status": "degraded",  # three queues have no worker: their jobs would wait
        "redis": "ok",
        "workers": {"emails": 1, "reports": 0, "integrations": 0, "default": 0},
    }

    worker.kill()  # no clean-up: its note in Redis stays until it expires (2 s here)
    gone = workers_when(lambda workers: workers["emails"] == 0, "the killed worker to drop out")
    assert gone["workers"] == dict.fromkeys(QUEUE_NAMES, 0)


@pytest.mark.parametrize(
    ("sent", "taken"),
    [
        ("abc", True),
        ("~" * 128, True),  # any visible ASCII, up to 128 characters
        ("req-2026/11/21:7f3a", True),
        ("~" * 129, False),
        ("has space", False),
    ],
    ids=["abc", "128-chars", "punctuation", "129-chars", "space"],
)
def test_the_api_takes_a_visible_ascii_request_id_up_to_128_characters_and_replaces_any_other(
    client: httpx.Client, sent: str, taken: bool
) -> None:
    response = client.get("/jobs/3fa85f64-5717-4562-b3fc-2c963f66afa6", headers={"X-Request-ID": sent})

    echoed = response.headers["X-Request-ID"]
    if taken:
        assert echoed == sent
    else:
        assert re.fullmatch(r"[0-9a-f]{32}", echoed), echoed


def test_the_api_makes_a_request_id_when_none_is_sent(client: httpx.Client) -> None:
    first, second = (client.get("/health").headers["X-Request-ID"] for _ in range(2))

    assert re.fullmatch(r"[0-9a-f]{32}", first) and first != second


@pytest.mark.parametrize("credentials", [None, "admin:", ":s3cret"], ids=["unset", "no password", "no user"])
def test_flower_refuses_to_start_without_credentials_and_says_how_to_set_them(
    start: Callable[..., ManagedProcess], monkeypatch: pytest.MonkeyPatch, credentials: str | None
) -> None:
    if credentials is None:
        monkeypatch.delenv("FLOWER_BASIC_AUTH", raising=False)
    else:
        monkeypatch.setenv("FLOWER_BASIC_AUTH", credentials)
    flower = start("flower")

    assert wait_for_exit(flower, timeout=30) == 1
    assert "Flower refuses to start without credentials: set FLOWER_BASIC_AUTH=user:password" in flower.output()
