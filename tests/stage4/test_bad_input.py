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
