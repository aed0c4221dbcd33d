"""A small app for the upload tests: stage 4's upload and thumbnail code, with no queue in between.

The stage's `POST /{lib}/thumbnails` stores the upload, then enqueues a job whose worker calls
make_thumbnail; here `POST /thumbnails` calls it at once, so the upload rules are tested without
a broker. The app also notes the body messages of each upload, so a test can tell how far the
server read.
"""

from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stage4_rq_dramatiq import thumbnails, uploads

# The sizes of the body messages the last POST /thumbnails handed to the app, in order.
last_upload_body_messages: list[int] = []


class NoteUploadBody:
    """ASGI middleware: note the size of every body message of POST /thumbnails that the app receives."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/thumbnails":
            await self.app(scope, receive, send)
            return
        last_upload_body_messages.clear()

        async def noted_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                last_upload_body_messages.append(len(message.get("body", b"")))
            return message

        await self.app(scope, noted_receive, send)


app = FastAPI(title="Stage 4 uploads, without a queue")
app.add_middleware(NoteUploadBody)
app.include_router(uploads.router)


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/thumbnails", openapi_extra=uploads.UPLOAD_FORM_OPENAPI)
def create_thumbnail(stored_name: uploads.StoredImage) -> dict[str, Any]:
    return {"stored_name": stored_name, **thumbnails.make_thumbnail(stored_name)}


@app.get("/last-upload-body-messages")
def get_last_upload_body_messages() -> list[int]:
    return last_upload_body_messages
