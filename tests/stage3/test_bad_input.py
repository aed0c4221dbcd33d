"""NaN and Infinity in what stage 3 adds: a countdown, and an event's payload (any JSON object).

A payload with a NaN was queued, and could never be sent (JSON has no NaN: httpx refuses it):
the job failed at once, a dead letter. So it is refused, naming the field, before anything is
queued or an Idempotency-Key is claimed. Stage 2's cases run here too
(test_stage2_guarantees.py).
"""

from __future__ import annotations

import httpx
import pytest

from tests.celery_stage import Queues
from tests.stage2.test_bad_input import post_raw, strict_json

# (path, raw body, the start of each error's loc): an error inside the payload also names the
# kind of JSON value it tried (["body", "payload", "amount", "float"]).
NOT_FINITE = [
    ("/jobs/add", '{"x": 1, "y": 2, "delay_seconds": NaN}', [["body", "delay_seconds"]]),
    ("/jobs/add", '{"x": 1, "y": 2, "delay_seconds": Infinity}', [["body", "delay_seconds"]]),
    ("/events", '{"type": "order.paid", "payload": {"amount": NaN}}', [["body", "payload", "amount"]]),
    ("/events", '{"type": "order.paid", "payload": {"lines": [{"price": -Infinity}]}}', [["body", "payload", "lines"]]),
    ("/events", '{"payload": {"amount": Infinity}}', [["body", "type"], ["body", "payload", "amount"]]),
]


@pytest.mark.parametrize(("path", "body", "fields"), NOT_FINITE, ids=[body for _, body, _ in NOT_FINITE])
def test_nan_or_infinity_in_a_countdown_or_an_event_payload_is_422_naming_the_field_and_enqueues_nothing(
    client: httpx.Client, queues: Queues, path: str, body: str, fields: list[list]
) -> None:
    response = client.post(path, content=body, headers={"Content-Type": "application/json", "Idempotency-Key": "nan-1"})

    assert response.status_code == 422, response.text
    locs = [error["loc"] for error in strict_json(response.text)["detail"]]
    assert [loc[: len(field)] for loc, field in zip(locs, fields, strict=True)] == fields
    assert queues.redis.dbsize() == 0, "no job, no mark, no Idempotency-Key"


def test_an_event_payload_of_finite_json_values_is_still_accepted(client: httpx.Client, queues: Queues) -> None:
    body = '{"type": "order.paid", "payload": {"amount": 1e300, "lines": [{"sku": "a", "n": 2}], "note": null}}'

    response = post_raw(client, "/events", body)

    assert response.status_code == 202, response.text
    queues.redis.delete("celery")  # no worker in this test: the job would wait for ever
