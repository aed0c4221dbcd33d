"""Demo chapter for stage 1: BackgroundTasks run after the response, in the same process."""

from __future__ import annotations

import json
import time

import httpx

from tutorial.tour import Tour
from tutorial.waiting import wait_until

TITLE = "Stage 1: FastAPI BackgroundTasks"


def run(tour: Tour) -> None:
    tour.chapter(TITLE)
    tour.say(
        "The API answers first and does the slow work afterwards, in the same process. "
        "A local mail catcher and a webhook receiver stand in for the real world."
    )
    tour.show("mail catcher", f"smtp://127.0.0.1:{tour.smtp.port}")
    tour.show("webhook receiver", tour.webhooks.url)
    api = tour.start_api("stage1_background_tasks.main:app")

    with httpx.Client(base_url=api, timeout=10) as client:
        tour.step("POST /users/42/welcome, while the mail server is made slow on purpose")
        tour.smtp.hold()
        started = time.monotonic()
        response = client.post("/users/42/welcome")
        tour.show("answer", f"{response.status_code} {response.json()} after {time.monotonic() - started:.3f}s")
        tour.smtp.wait_for_event("held")
        tour.say("The client has its 202 already; the e-mail task is still talking to the mail server.")
        tour.show("e-mails received so far", len(tour.smtp.messages))
        tour.smtp.release()
        (mail,) = tour.smtp.wait_for_messages(1)
        tour.say("Now the mail server lets it through, and the e-mail arrives:")
        tour.show("To", ", ".join(mail.rcpt_tos))
        tour.show("Subject", mail.subject)
        tour.show("Body", mail.body)

        tour.step("POST /events: an async task delivers a webhook with httpx.AsyncClient")
        response = client.post("/events", json={"type": "user.created", "payload": {"user_id": 42}})
        tour.show("answer", f"{response.status_code} {response.json()}")
        (request,) = tour.webhooks.wait_for_requests(1)
        tour.show("the receiver got", f"POST {request.path} {request.json()}")

        tour.step("The audit log: one JSON line per action, written by a third task")
        wait_until(
            lambda: tour.audit_log.exists() and len(tour.audit_log.read_text().splitlines()) >= 2,
            timeout=10,
            what="two audit lines",
        )
        for line in tour.audit_log.read_text().splitlines():
            tour.show("audit", json.dumps(json.loads(line)))

        tour.step("Bad input is refused before anything is scheduled: POST /users/0/welcome")
        response = client.post("/users/0/welcome")
        detail = response.json()["detail"][0]
        tour.show("answer", f"{response.status_code}, field {detail['loc']}: {detail['msg']}")

    tour.say(
        "What BackgroundTasks cannot do (the tests show each one): the work is lost if the "
        "process dies, nobody retries a failure, and an async task with a blocking call "
        "stalls every other request. Stage 2 moves the work to Celery."
    )
