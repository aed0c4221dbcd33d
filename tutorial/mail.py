"""A real local SMTP server that keeps every message it receives.

The stages send real e-mail over SMTP; this server catches it, so the demo can print
it and the tests can assert on it. It runs aiosmtpd on its own event loop in a
background thread.

For tests that need to pause a sender halfway, ``hold()`` makes the server stop
after the client has said who the mail is from (MAIL FROM) and wait until
``release()``: the message body has not been sent yet at that point.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import threading
from dataclasses import dataclass
from email.message import EmailMessage

from aiosmtpd.smtp import SMTP, Envelope, Session

from tutorial.recording import Recorder


@dataclass(frozen=True)
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    subject: str
    body: str
    message: EmailMessage


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        self.sink._note("held" if not self.sink._open.is_set() else "mail_from")
        await self.sink._open.wait()
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        message = email.message_from_bytes(envelope.original_content or b"", policy=email.policy.default)
        body_part = message.get_body(preferencelist=("plain",)) if message.is_multipart() else message
        body = body_part.get_content().strip() if body_part is not None else ""
        self.sink._keep(
            ReceivedMail(
                mail_from=envelope.mail_from or "",
                rcpt_tos=list(envelope.rcpt_tos),
                subject=str(message.get("Subject", "")),
                body=body,
                message=message,
            ),
            "received",
        )
        return "250 Message accepted for delivery"


class _SinkSMTP(SMTP):
    def __init__(self, handler: _Handler, sink: SmtpSink) -> None:
        super().__init__(handler, hostname="tutorial-mail-catcher")
        self._sink = sink

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._sink._note("connected")
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self._sink._note("disconnected")
        super().connection_lost(error)


class SmtpSink(Recorder[ReceivedMail]):
    """An SMTP server on host:port (0 picks a free port) that keeps what it receives.

    Its events: connected, mail_from, held, received, disconnected.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__("the SMTP server")
        self.host = host
        self.port = port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="smtp-sink", daemon=True)
        self._server: asyncio.Server | None = None
        self._open = asyncio.Event()
        self._open.set()

    def start(self) -> SmtpSink:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._serve(), self._loop)
        self._server = future.result(timeout=10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _serve(self) -> asyncio.Server:
        handler = _Handler(self)
        return await self._loop.create_server(lambda: _SinkSMTP(handler, self), self.host, self.port)

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self.release()
        if self._server is not None:
            self._server.close()
            asyncio.run_coroutine_threadsafe(self._server.wait_closed(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def messages(self) -> list[ReceivedMail]:
        return self.received

    # Called from the test or the demo.
    def hold(self) -> None:
        """From now on, pause every sender after MAIL FROM until release()."""
        self._loop.call_soon_threadsafe(self._open.clear)

    def release(self) -> None:
        """Let held senders go on."""
        self._loop.call_soon_threadsafe(self._open.set)

    def wait_for_messages(self, count: int = 1, timeout: float = 10) -> list[ReceivedMail]:
        """Wait until at least ``count`` messages have arrived, and return them all."""
        return self._wait_for_items(count, timeout, "e-mail(s)")
