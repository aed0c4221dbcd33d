"""NaN and Infinity in a body, in every library: 422 naming the field, nothing queued, no key
claimed (the cases of stages 2 and 3: tests/stage2/test_bad_input.py, tests/stage3/test_bad_input.py)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import redis

from tests.stage2.test_bad_input import NOT_FINITE as IN_STAGE_2
from tests.stage2.test_bad_input import strict_json
from tests.stage3.test_bad_input import NOT_FINITE as IN_STAGE_3
from tests.stage4.conftest import LIBRARIES

NOT_FINITE = IN_STAGE_2 + IN_STAGE_3


@pytest.fixture
def database(stage_env: dict[str, str]) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(stage_env["REDIS_URL"]) as client:
        yield client


@pytest.mark.parametrize(("path", "body", "fields"), NOT_FINITE, ids=[body for _, body, _ in NOT_FINITE])
@pytest.mark.parametrize("library", LIBRARIES)
def test_nan_or_infinity_in_a_body_is_422_naming_the_field_in_every_library_and_enqueues_nothing(
    library: str, client: httpx.Client, database: redis.Redis, path: str, body: str, fields: list[list]
) -> None:
    keys_before = set(database.keys())

    response = client.post(
        f"/{library}{path}", content=body, headers={"Content-Type": "application/json", "Idempotency-Key": "nan-1"}
    )

    assert response.status_code == 422, response.text
    locs = [error["loc"] for error in strict_json(response.text)["detail"]]
    assert [loc[: len(field)] for loc, field in zip(locs, fields, strict=True)] == fields
    assert set(database.keys()) - keys_before == set(), "no job, no state, no Idempotency-Key"


@pytest.mark.parametrize(
    ("method", "path", "where"),
    [
        ("POST", "/jobs/add", "/celery/jobs/add"),  # stage 3's route, which stage 4 moved under /celery
        ("GET", "/dead-letters", "/celery/dead-letters"),
        ("GET", "/job/3fa85f64-5717-4562-b3fc-2c963f66afa6", "/celery/job/3fa85f64-5717-4562-b3fc-2c963f66afa6"),
    ],
)
def test_a_path_no_route_has_is_404_saying_where_the_routes_are(
    client: httpx.Client, method: str, path: str, where: str
) -> None:
    response = client.request(method, path, json={"x": 2, "y": 3})

    assert response.status_code == 404, response.text
    detail = response.json()["detail"]
    assert detail.startswith(f"No route {path} in stage 4: its job routes are under /celery, /rq and /dramatiq")
    assert f"(for Celery: {where}); see /docs" in detail


def test_a_route_s_own_404_keeps_its_words(client: httpx.Client) -> None:
    job_id = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
    response = client.get(f"/celery/jobs/{job_id}")
    assert (response.status_code, response.json()) == (
        404,
        {"detail": f"No job {job_id}: it was never issued, or it has expired."},
    )
    # Under a route's own prefix, the router's plain 404 stays (a path that only looks like a file).
    response = client.get("/thumbnails/..%2F..%2F..%2Fetc%2Fpasswd")
    assert (response.status_code, response.json()) == (404, {"detail": "Not Found"})
