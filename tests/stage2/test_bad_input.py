"""NaN and Infinity: Python's JSON parser takes them (and 1e400, which is Infinity), JSON has no
such numbers. A body with one is refused like any bad input: 422 naming the field, in an answer
that is JSON, and nothing queued. (FastAPI's own handler echoed the number back and could not
encode it: a 500.)
"""

from __future__ import annotations

import json

import httpx
import pytest

from tests.celery_stage import Queues

# (path, raw body, the loc of each error): what a fuzzer sends to the job API of stage 2 and on.
NOT_FINITE = [
    ("/jobs/add", '{"x": NaN, "y": 1}', [["body", "x"]]),
    ("/jobs/add", '{"x": 1, "y": Infinity}', [["body", "y"]]),
    ("/jobs/add", '{"x": -Infinity, "y": 1}', [["body", "x"]]),
    ("/jobs/add", '{"x": 1e400, "y": 1}', [["body", "x"]]),
    # The error for the missing y echoes the whole body, NaN and all.
    ("/jobs/add", '{"x": NaN}', [["body", "x"], ["body", "y"]]),
    # A NaN row was taken: the report ran, and its answer said "sum": null.
    ("/jobs/report", '{"rows": [1, NaN]}', [["body", "rows", 1]]),
    ("/jobs/report", '{"rows": [Infinity]}', [["body", "rows", 0]]),
    ("/jobs/report", '{"rows": [2, -Infinity, 1e400]}', [["body", "rows", 1], ["body", "rows", 2]]),
    ("/jobs/report", "[NaN]", [["body"]]),
    ("/jobs/report", "NaN", [["body"]]),
]


def strict_json(text: str) -> object:
    """Parse as JSON is written: NaN, Infinity and -Infinity are not part of it."""

    def refuse(constant: str) -> object:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def post_raw(client: httpx.Client, path: str, body: str) -> httpx.Response:
    return client.post(path, content=body, headers={"Content-Type": "application/json"})


@pytest.mark.parametrize(("path", "body", "fields"), NOT_FINITE, ids=[body for _, body, _ in NOT_FINITE])
def test_nan_or_infinity_in_a_body_is_422_naming_the_field_and_enqueues_nothing(
    client: httpx.Client, queues: Queues, path: str, body: str, fields: list[list]
) -> None:
    response = post_raw(client, path, body)

    assert response.status_code == 422, response.text
    assert [error["loc"] for error in strict_json(response.text)["detail"]] == fields
    assert queues.waiting() == 0
    assert queues.job_keys() == []
