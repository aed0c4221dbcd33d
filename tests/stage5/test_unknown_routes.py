"""A path no route has (stage 4's /celery/jobs/add, say): a 404 that says where stage 5's routes are."""

from __future__ import annotations

import httpx
import pytest


@pytest.mark.parametrize(
    ("method", "path", "where"),
    [
        ("POST", "/celery/jobs/add", "/jobs/add"),  # stage 4's Celery route: back where stage 3 had it
        ("GET", "/rq/jobs/3fa85f64-5717-4562-b3fc-2c963f66afa6", "/jobs/3fa85f64-5717-4562-b3fc-2c963f66afa6"),
        ("GET", "/job/42", None),
    ],
)
def test_a_path_no_route_has_is_404_saying_where_the_routes_are(
    client: httpx.Client, method: str, path: str, where: str | None
) -> None:
    response = client.request(method, path, json={"x": 2, "y": 3})

    assert response.status_code == 404, response.text
    detail = response.json()["detail"]
    assert detail.startswith(f"No route {path} in stage 5: its routes are /jobs/..., /dead-letters, /thumbnails")
    assert detail.endswith(f"(stage 4's {path} is {where} here); see /docs." if where else "; see /docs.")


def test_a_route_s_own_404_keeps_its_words(client: httpx.Client) -> None:
    job_id = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
    response = client.get(f"/jobs/{job_id}")
    assert (response.status_code, response.json()) == (
        404,
        {"detail": f"No job {job_id}: it was never issued, or it has expired."},
    )
    # Under a route's own prefix, the router's plain 404 stays (a path that only looks like a file).
    response = client.get("/thumbnails/..%2F..%2F..%2Fetc%2Fpasswd")
    assert (response.status_code, response.json()) == (404, {"detail": "Not Found"})
