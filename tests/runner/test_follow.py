"""The READMEs' two helpers: `tutorial job-id` keeps a job's id, `tutorial follow` watches its states."""

from __future__ import annotations

import io
import json
import re
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tutorial.follow import follow
from tutorial.processes import free_port, python_command

JOB = "a49b76b5-7ef7-471a-aeac-b2e3095cb559"


@contextmanager
def job_api(answers: list[tuple[int, dict[str, object]]]) -> Iterator[str]:
    """A real HTTP server whose GET gives the next answer each time (the last one for ever after)."""
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            status, body = answers[min(len(asked), len(answers) - 1)]
            asked.append(self.path)
            data = json.dumps(body, separators=(",", ":")).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}/jobs/{JOB}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def state(status: str, **fields: object) -> tuple[int, dict[str, object]]:
    return 200, {"job_id": JOB, "status": status, **fields}


def test_follow_prints_each_new_answer_once_with_the_time_until_the_job_ends() -> None:
    answers = [state("queued")] * 3 + [state("progress", progress={"current": 1, "total": 2})] * 2
    answers += [state("retrying", attempts=1), state("succeeded", result=5)]
    out = io.StringIO()
    with job_api(answers) as url:
        status = follow(url, out=out)

    lines = out.getvalue().splitlines()
    assert status == 0
    assert all(re.match(r"\d\d:\d\d:\d\d \{", line) for line in lines), lines
    shown = [json.loads(line.split(" ", 1)[1])["status"] for line in lines]
    assert shown == ["queued", "progress", "retrying", "succeeded"]


def test_follow_stops_at_a_failed_job_too_and_says_why_it_stops_otherwise() -> None:
    with job_api([state("started"), state("failed", error="ValueError: no")]) as url:
        assert follow(url, out=io.StringIO()) == 0

    not_found = io.StringIO()
    with job_api([(404, {"detail": f"No job {JOB}: it was never issued, or it has expired."})]) as url:
        assert follow(url, out=not_found) == 1
    assert "it was never issued" in not_found.getvalue()

    waiting = io.StringIO()
    with job_api([state("queued")]) as url:
        assert follow(url, timeout=0.3, out=waiting) == 1
    assert waiting.getvalue().count('"status":"queued"') == 1
    assert "still queued after 0.3 s: stopped following (is a worker running?)" in waiting.getvalue()

    nobody = io.StringIO()
    assert follow(f"127.0.0.1:{free_port()}/jobs/{JOB}", out=nobody) == 1
    assert "(is the API running?)" in nobody.getvalue()


def job_id_command(answer: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        python_command("-m", "tutorial", "job-id"), input=answer, capture_output=True, text=True, timeout=30
    )


def test_job_id_shows_the_answer_and_prints_only_the_id_for_the_shell() -> None:
    body = json.dumps({"job_id": JOB, "status_url": f"/jobs/{JOB}"})
    with_headers = f"HTTP/1.1 202 Accepted\r\nlocation: /jobs/{JOB}\r\n\r\n{body}"
    after_continue = f"HTTP/1.1 100 Continue\r\n\r\n{with_headers}\r\n"  # curl -i of an upload
    for answer in (body, with_headers, after_continue):
        done = job_id_command(answer)
        shown = answer.replace("\r\n", "\n").removesuffix("\n") + "\n"  # as a terminal shows it
        assert (done.returncode, done.stdout, done.stderr) == (0, f"{JOB}\n", shown)

    refused = '{"detail":"Redis at redis://localhost:6379/0 does not answer"}'
    done = job_id_command(refused)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.startswith(refused + "\n")
    assert "no job_id in this answer" in done.stderr
