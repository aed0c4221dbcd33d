"""Demo chapter for stage 4: the same requests answered by Celery, RQ and Dramatiq, and a safe upload."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from tutorial.redis_server import redacted
from tutorial.tour import Tour
from tutorial.waiting import wait_until

TITLE = "Stage 4: Celery, RQ and Dramatiq side by side"
LIBRARIES = ("celery", "rq", "dramatiq")
# Quick enough for a demo: add takes 1 s; retries wait at most 0.2 s, then 0.4 s; 3 attempts in all.
# The API gets them too: RQ's retries are options of the job, chosen when the API enqueues it.
PACE = {"ADD_DELAY_SECONDS": "1", "RETRY_BACKOFF_SECONDS": "0.2", "WEBHOOK_MAX_RETRIES": "2"}
FINISHED = ("succeeded", "failed")
EVENT = {"type": "order.paid", "payload": {"order": 7}}


def worker_commands(redis_url: str) -> dict[str, tuple[tuple[str, ...], str]]:
    """Each library's worker (``python -m ...`` arguments) and what it prints when ready.

    The Procfile's commands, but Celery's with the solo pool and without mingle: one process,
    quicker to start and to stop, which is all a demo needs.
    """
    return {
        "celery": (
            (
                "-m",
                "celery",
                "-A",
                "stage4_rq_dramatiq.celery_app",
                "worker",
                "--loglevel=INFO",
                "--pool=solo",
                "--without-mingle",
            ),
            " ready.",
        ),
        "rq": (
            ("-m", "rq.cli", "worker", "--with-scheduler", "--url", redis_url)
            + ("--serializer", "rq.serializers.JSONSerializer", "default"),
            "Listening on default",
        ),
        "dramatiq": (
            ("-m", "dramatiq", "stage4_rq_dramatiq.dramatiq_actors", "--processes", "1", "--threads", "4"),
            "Worker process is ready for action.",
        ),
    }


def run(tour: Tour) -> None:
    tour.chapter(TITLE)
    tour.say(
        "Stage 3's job API, once per library: the same routes under /celery, /rq and /dramatiq, "
        "each backed by its library's own queue, worker, retries and failed-job store. The same "
        "requests get the same answers; only backend_status, each library's own word, differs."
    )
    tour.show("queue and results", redacted(tour.redis.url))
    uploads = tour.work_dir / "stage4-uploads"
    settings = {**PACE, "UPLOAD_DIR": str(uploads)}
    api = tour.start_api("stage4_rq_dramatiq.main:app", **settings)
    tour.show("settings", ", ".join(f"{name}={value}" for name, value in settings.items()))

    with httpx.Client(base_url=api, timeout=10) as client:
        the_same_job_three_times(tour, client, settings)
        a_flaky_delivery_three_times(tour, client)
        an_upload_and_its_thumbnail(tour, client, uploads)

    tour.say(
        "One contract, three libraries. What differs is below the API: RQ keeps job states and "
        "failed jobs for you but needs its scheduler and serializer set; Dramatiq retries by "
        "default but keeps no states; Celery has the most machinery. The stage's README has the "
        "side-by-side code, what kill -9 does to each, and when to choose which."
    )


def the_same_job_three_times(tour: Tour, client: httpx.Client, settings: dict[str, str]) -> None:
    tour.step("POST /<library>/jobs/add {x: 2, y: 3} to each library, while no worker runs")
    status_urls = {library: enqueue(tour, client, f"/{library}/jobs/add", {"x": 2, "y": 3}) for library in LIBRARIES}
    for library, status_url in status_urls.items():
        job = client.get(status_url).json()
        tour.show(library, f"{job['status']} ({job['backend_status']})")
    tour.say("Each job waits in Redis for a worker of its own library.")

    tour.step("Start one worker per library, all three at once")
    started = []
    for library, (args, ready) in worker_commands(tour.redis.url).items():
        shown = " ".join(redacted(arg) if arg == tour.redis.url else arg for arg in args[1:])
        tour.show(library, shown.replace("rq.cli", "rq"))
        started.append((tour.start_process(f"stage4-{library}", *args, **settings), ready))
    for worker, ready in started:
        worker.wait_for_output(ready, timeout=30)
    for library, status_url in status_urls.items():
        done = wait_finished(client, status_url)
        tour.show(library, f"{done['status']} ({done['backend_status']}), result {done.get('result')}")


def a_flaky_delivery_three_times(tour: Tour, client: httpx.Client) -> None:
    tour.step("POST /<library>/events to a receiver that answers 503 twice per event, then 200")
    tour.webhooks.fail_first(2, status=503)
    try:
        status_urls = {library: enqueue(tour, client, f"/{library}/events", EVENT) for library in LIBRARIES}
        for library, status_url in status_urls.items():
            done = wait_finished(client, status_url)
            job_id = status_url.rsplit("/", 1)[-1]
            answers = ", ".join(str(status) for status in tour.webhooks.statuses(job_id))
            tour.show(library, f"{done['status']} after {done['attempts']} attempts; the receiver answered {answers}")
    finally:
        tour.webhooks.heal()
    tour.say(
        "Each library retried by its own means: Celery's self.retry in the task, RQ's Retry given "
        "with the job when the API enqueued it, Dramatiq's retry_when on the actor. Every attempt "
        "carried the job id as Idempotency-Key."
    )


def an_upload_and_its_thumbnail(tour: Tour, client: httpx.Client, uploads: Path) -> None:
    tour.step("POST /dramatiq/thumbnails: a real PNG, sent under the name ../../etc/passwd")
    tour.say(
        "The seed's Dramatiq example wrote an upload to /tmp/{file.filename}, and /tmp/../../etc/passwd "
        "is /etc/passwd. Here the server names the file, and the client's name plays no part."
    )
    picture = io.BytesIO()
    Image.new("RGB", (640, 320), "teal").save(picture, format="PNG")
    response = client.post("/dramatiq/thumbnails", files={"file": ("../../etc/passwd", picture.getvalue())})
    response.raise_for_status()
    tour.show("answer", f"{response.status_code} {response.json()}")
    done = wait_finished(client, response.json()["status_url"])
    tour.show("GET", f"{done['status']}, result {done['result']}")
    thumbnail = client.get(done["result"]["thumbnail_url"])
    with Image.open(io.BytesIO(thumbnail.content)) as image:
        tour.show("thumbnail", f"{image.width}x{image.height} {thumbnail.headers['content-type']}")
    stored = sorted(path.relative_to(uploads).as_posix() for path in uploads.rglob("*") if path.is_file())
    tour.show("files in UPLOAD_DIR", ", ".join(stored))

    tour.step("POST /dramatiq/thumbnails: a text file under the same name, sent as image/png")
    refused = client.post(
        "/dramatiq/thumbnails", files={"file": ("../../etc/passwd", b"root:x:0:0:root:/root:/bin/bash\n", "image/png")}
    )
    tour.show("answer", f"{refused.status_code} {refused.json()['detail']}")
    tour.show("files in UPLOAD_DIR", f"{sum(1 for path in uploads.rglob('*') if path.is_file())}, as before")

    tour.step("GET /thumbnails/..%2F..%2Fetc%2Fpasswd")
    escaped = client.get("/thumbnails/..%2F..%2Fetc%2Fpasswd")
    tour.show("answer", f"{escaped.status_code} {escaped.json()}")
    tour.say("GET /thumbnails/{name} serves only names the server gave out; anything else is 404.")


def enqueue(tour: Tour, client: httpx.Client, path: str, body: dict[str, Any]) -> str:
    started = time.monotonic()
    response = client.post(path, json=body)
    response.raise_for_status()
    tour.show(
        f"POST {path}",
        f"{response.status_code} after {time.monotonic() - started:.3f}s, job {response.json()['job_id']}",
    )
    return response.json()["status_url"]


def wait_finished(client: httpx.Client, status_url: str, timeout: float = 20) -> dict[str, Any]:
    seen: list[dict[str, Any]] = []

    def finished() -> dict[str, Any] | None:
        seen.append(client.get(status_url).json())
        return seen[-1] if seen[-1]["status"] in FINISHED else None

    return wait_until(finished, timeout=timeout, what=f"{status_url} to finish", seen=lambda: seen[-1:])
