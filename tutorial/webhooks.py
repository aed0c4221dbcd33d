"""A real local HTTP server that records every webhook it receives, and can fail on purpose.

The stages deliver webhooks over real HTTP. This server keeps each request with the
status it answered, so the demo can print it and the tests can assert on it. The path
chooses the answer, so a learner can try a failure by hand, with no restart:

- ``/webhook`` (and any path not below): ``200``.
- ``/webhook/flaky/<n>``: ``503`` for the first ``n`` deliveries of each
  ``Idempotency-Key``, then ``200``. Each key counts on its own, per path; requests
  without an ``Idempotency-Key`` share one count per path. ``?status=429`` fails
  with that status instead of 503.
- ``/webhook/status/<code>``: always ``<code>`` (200-599), e.g. ``500`` for a
  receiver that is down, ``400`` for a permanent refusal.
- ``?retry_after=<value>`` on either: a failing answer carries ``Retry-After: <value>``.
- A malformed one (``/webhook/status/abc``, ``/webhook/flaky/2?status=200``): ``404``,
  with a body that says which forms exist.

For tests that need a slow receiver, ``hold()`` makes it keep each request waiting,
unanswered, until ``release()``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import threading
from collections import Counter
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

from tutorial.recording import Recorder

FLAKY_PATH = re.compile(r"/webhook/flaky/(?P<failures>\d+)")
STATUS_PATH = re.compile(r"/webhook/status/(?P<status>\d+)")
FAILING_PATH = re.compile(r"/webhook/(flaky|status)(/.*)?")
USAGE = "use /webhook/flaky/<n>[?status=<400-599>][&retry_after=<s>] or /webhook/status/<200-599>[?retry_after=<s>]"


@dataclasses.dataclass(frozen=True)
class ReceivedRequest:
    method: str
    path: str  # as requested, with the query string
    headers: dict[str, str]
    body: bytes
    status: int = 200  # what the receiver answered (or will answer, while held)
    # When it arrived (wall clock, UTC): a lower bound between two requests shows a wait was kept.
    arrived_at: datetime = dataclasses.field(default_factory=lambda: datetime.now(UTC))

    def json(self) -> object:
        return json.loads(self.body)

    @property
    def idempotency_key(self) -> str | None:
        return next((value for name, value in self.headers.items() if name.lower() == "idempotency-key"), None)


@dataclasses.dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, object]
    retry_after: str | None = None


class WebhookReceiver(Recorder[ReceivedRequest]):
    """An HTTP server on host:port (0 picks a free port) that records what it receives.

    Its events: arrived, held, answered.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__("the webhook receiver")
        self._open = threading.Event()
        self._open.set()
        self._deliveries: Counter[tuple[str, str | None]] = Counter()  # (path, Idempotency-Key) -> count
        self._deliveries_lock = threading.Lock()
        self._script: tuple[int, int] | None = None  # (failures, status) of fail_first / fail_always
        self._scripted: Counter[str | None] = Counter()  # Idempotency-Key -> deliveries since fail_first
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self.host, self.port = self._server.server_address[:2]
        # A short poll interval, so stop() returns at once instead of after half a second.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="webhooks", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/webhook"

    def flaky_url(self, failures: int, *, status: int = 503, retry_after: float | None = None) -> str:
        """The URL that fails the first ``failures`` deliveries of each Idempotency-Key with ``status``."""
        query = {"status": status} if status != 503 else {}
        return _with_query(f"{self.url}/flaky/{failures}", query, retry_after)

    def status_url(self, status: int, *, retry_after: float | None = None) -> str:
        """The URL that always answers ``status``."""
        return _with_query(f"{self.url}/status/{status}", {}, retry_after)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def handle_one_request(self) -> None:
                # A sender that stopped waiting (its timeout) has closed the connection: answering late is fine.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    super().handle_one_request()

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                answer = receiver._arrive(self.command, self.path, dict(self.headers), body)
                self.send_response(answer.status)
                if answer.retry_after is not None:
                    self.send_header("Retry-After", answer.retry_after)
                if answer.status in (204, 304):  # answers without a body, by the HTTP rules
                    self.end_headers()
                else:
                    content = json.dumps(answer.body).encode()
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(content)))
                    self.end_headers()
                    self.wfile.write(content)
                receiver._note("answered")

            # A learner may try a path with curl or a browser: every method but HEAD is answered alike.
            do_GET = do_PUT = do_PATCH = do_DELETE = do_POST

            def log_message(self, format: str, *args: object) -> None:
                pass  # the demo prints what arrived; the access log is only noise

        return Handler

    @property
    def requests(self) -> list[ReceivedRequest]:
        return self.received

    def requests_with_key(self, idempotency_key: str) -> list[ReceivedRequest]:
        """The requests that carried this Idempotency-Key, in the order they arrived."""
        with self._lock:
            return [request for request in self.received if request.idempotency_key == idempotency_key]

    def statuses(self, idempotency_key: str) -> list[int]:
        """The statuses answered to the requests with this Idempotency-Key, in order."""
        return [request.status for request in self.requests_with_key(idempotency_key)]

    def _arrive(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        request = ReceivedRequest(method, path, headers, body)
        # One lock around counting and keeping, so the n-th request kept is the n-th one counted.
        with self._deliveries_lock:
            answer = self._answer_for(request)
            self._keep(dataclasses.replace(request, status=answer.status), "arrived")
        if not self._open.is_set():
            self._note("held")
            self._open.wait(timeout=120)  # never forever, even if a test forgets release()
        return answer

    def _answer_for(self, request: ReceivedRequest) -> Answer:
        if self._script is not None:
            return self._scripted_answer(request)
        parts = urlsplit(request.path)
        path = parts.path.rstrip("/")
        query = {name: values[-1] for name, values in parse_qs(parts.query).items()}
        retry_after = query.get("retry_after")
        if flaky := FLAKY_PATH.fullmatch(path):
            status = _number(query.get("status", "503"))
            if status is None or not 400 <= status <= 599:
                return Answer(404, {"error": f"a flaky path fails with a status of 400-599; {USAGE}"})
            self._deliveries[(path, request.idempotency_key)] += 1
            delivery, failures = self._deliveries[(path, request.idempotency_key)], int(flaky["failures"])
            if delivery <= failures:
                error = f"failing on purpose: delivery {delivery}, the first {failures} fail"
                return Answer(status, {"received": True, "error": error}, retry_after)
            return Answer(200, {"received": True, "delivery": delivery})
        if exact := STATUS_PATH.fullmatch(path):
            status = int(exact["status"])
            if not 200 <= status <= 599:
                return Answer(404, {"error": f"{status} is not a status of 200-599; {USAGE}"})
            if status < 400:
                return Answer(status, {"received": True})
            return Answer(status, {"received": True, "error": f"answering {status} on purpose"}, retry_after)
        if FAILING_PATH.fullmatch(path):
            return Answer(404, {"error": f"no such failure: {parts.path}; {USAGE}"})
        return Answer(200, {"received": True})

    # Failing on purpose without a new URL: for a worker started once, pointed at /webhook --------------

    def fail_first(self, failures: int, status: int = 503) -> None:
        """From now on, on every path: the first ``failures`` deliveries of each Idempotency-Key fail."""
        with self._deliveries_lock:
            self._script = (failures, status)
            self._scripted.clear()

    def fail_always(self, status: int = 500) -> None:
        """From now on, every delivery fails with ``status`` (a receiver that is down), until heal()."""
        self.fail_first(10**9, status)

    def heal(self) -> None:
        """Back to answering by path (200 on /webhook): the receiver is fixed."""
        with self._deliveries_lock:
            self._script = None

    def _scripted_answer(self, request: ReceivedRequest) -> Answer:
        failures, status = self._script
        self._scripted[request.idempotency_key] += 1
        delivery = self._scripted[request.idempotency_key]
        if delivery <= failures:
            return Answer(status, {"received": True, "error": f"failing on purpose: delivery {delivery}"})
        return Answer(200, {"received": True, "delivery": delivery})

    def start(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release()
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=10)
        self._server.server_close()

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def hold(self) -> None:
        """From now on, keep each request waiting, unanswered, until release()."""
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def wait_for_requests(self, count: int = 1, timeout: float = 10) -> list[ReceivedRequest]:
        """Wait until at least ``count`` requests have arrived, and return them all."""
        return self._wait_for_items(count, timeout, "webhook request(s)")


def _number(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def _with_query(url: str, query: dict[str, object], retry_after: float | None) -> str:
    if retry_after is not None:
        query["retry_after"] = f"{retry_after:g}"
    return f"{url}?{urlencode(query)}" if query else url
