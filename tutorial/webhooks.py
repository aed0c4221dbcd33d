"""A real local HTTP server that records every webhook it receives.

The stages deliver webhooks over real HTTP; this server answers 200 and keeps each
request, so the demo can print it and the tests can assert on it.

For tests that need a slow receiver, ``hold()`` makes it keep each request waiting,
unanswered, until ``release()``.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tutorial.recording import Recorder


@dataclass(frozen=True)
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> object:
        return json.loads(self.body)


class WebhookReceiver(Recorder[ReceivedRequest]):
    """An HTTP server on host:port (0 picks a free port) that records what it receives.

    Its events: arrived, held, answered.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__("the webhook receiver")
        self._open = threading.Event()
        self._open.set()
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self.host, self.port = self._server.server_address[:2]
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhooks", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/webhook"

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = ReceivedRequest("POST", self.path, dict(self.headers), self.rfile.read(length))
                receiver._arrive(request)
                body = b'{"received": true}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                receiver._note("answered")

            def log_message(self, format: str, *args: object) -> None:
                pass  # the demo prints what arrived; the access log is only noise

        return Handler

    @property
    def requests(self) -> list[ReceivedRequest]:
        return self.received

    def _arrive(self, request: ReceivedRequest) -> None:
        self._keep(request, "arrived")
        if not self._open.is_set():
            self._note("held")
            self._open.wait(timeout=120)  # never forever, even if a test forgets release()

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
