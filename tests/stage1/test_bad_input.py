"""NaN and Infinity in an event: Python's JSON parser takes them, JSON has no such numbers (httpx
refuses to send them). An event with one is refused before anything is scheduled: 422 naming the
field, in an answer that is JSON (FastAPI's own handler echoed the number back: a 500)."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import RunningApi
from tests.stage2.test_bad_input import strict_json
from tutorial.webhooks import WebhookReceiver

# (raw body, the start of each error's loc): an error inside the payload also names the kind of
# JSON value it tried (["body", "payload", "amount", "float"]).
NOT_FINITE = [
    ('{"type": "order.paid", "payload": {"amount": NaN}}', [["body", "payload", "amount"]]),
    ('{"type": "order.paid", "payload": {"lines": [{"price": -Infinity}]}}', [["body", "payload", "lines"]]),
    ('{"payload": {"amount": Infinity}}', [["body", "type"], ["body", "payload", "amount"]]),
    ("[NaN]", [["body"]]),
]


@pytest.mark.parametrize(("body", "fields"), NOT_FINITE, ids=[body for body, _ in NOT_FINITE])
@pytest.mark.parametrize("path", ["/events", "/events/threaded"])
def test_nan_or_infinity_in_an_event_is_422_naming_the_field_and_nothing_is_delivered(
    stage1_api: RunningApi, webhook_receiver: WebhookReceiver, path: str, body: str, fields: list[list]
) -> None:
    with httpx.Client(base_url=stage1_api.base_url, timeout=10) as client:
        response = client.post(path, content=body, headers={"Content-Type": "application/json"})
        # Then a good event: once it has arrived, anything scheduled before it would have too.
        assert client.post(path, json={"type": "order.paid", "payload": {"amount": 1.5}}).status_code == 202

    assert response.status_code == 422, response.text
    locs = [error["loc"] for error in strict_json(response.text)["detail"]]
    assert [loc[: len(field)] for loc, field in zip(locs, fields, strict=True)] == fields
    (delivered,) = webhook_receiver.wait_for_requests(1)
    assert delivered.json() == {"type": "order.paid", "payload": {"amount": 1.5}}
