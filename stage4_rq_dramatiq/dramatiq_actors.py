"""The Dramatiq actors: retries, backoff and a time limit are actor options; the work is in work.py.

The worker: dramatiq stage4_rq_dramatiq.dramatiq_actors
"""

from typing import Any

import dramatiq
import httpx
from dramatiq.middleware import CurrentMessage

# Part of the stage4_rq_dramatiq package; in a flat project: from dramatiq_app import ...
# The broker must be set before an actor is declared: dramatiq_app sets it when imported.
from . import thumbnails, work
from .config import settings
from .dramatiq_app import QUEUE, broker, report_progress

# Dramatiq's backoff is in milliseconds, exponential with jitter, between these two.
BACKOFF = {
    "min_backoff": int(settings.retry_backoff_seconds * 1000),
    "max_backoff": int(settings.retry_backoff_max_seconds * 1000),
}


def retry_webhook_when(retries: int, error: BaseException) -> bool:
    """Dramatiq asks this before each retry (it then ignores max_retries: count here)."""
    if retries >= settings.webhook_max_retries:
        return False
    retryable = isinstance(error, work.WebhookFailed) and error.retryable
    return retryable or isinstance(error, httpx.TransportError | dramatiq.Retry)


def retry_email_when(retries: int, error: BaseException) -> bool:
    return retries < settings.email_max_retries and isinstance(error, work.SMTP_CONNECTION_ERRORS)


@dramatiq.actor(queue_name=QUEUE, store_results=True, retry_when=retry_email_when, **BACKOFF)
def send_welcome_email(user_id: int, to: str) -> None:
    """Send the welcome e-mail, once per message, however often it is delivered."""
    sent = f"welcome-email-sent:{CurrentMessage.get_current_message().message_id}"
    if broker.client.exists(sent):
        return
    work.send_email(work.welcome_email(user_id, to))
    broker.client.set(sent, 1, ex=settings.idempotency_ttl_seconds)


@dramatiq.actor(queue_name=QUEUE, store_results=True, retry_when=retry_webhook_when, **BACKOFF)
def deliver_webhook(event: dict[str, Any]) -> dict[str, int]:
    """POST the event; a retryable error is retried, the receiver's Retry-After honoured."""
    try:
        return work.post_event(event, idempotency_key=CurrentMessage.get_current_message().message_id)
    except work.WebhookFailed as error:
        if error.retryable and error.retry_after:
            raise dramatiq.Retry(str(error), delay=int(error.retry_after * 1000)) from None
        raise


@dramatiq.actor(queue_name=QUEUE, store_results=True, max_retries=0)
def add(x: int, y: int) -> int:
    return work.add_slowly(x, y)


# Dramatiq's one time limit raises TimeLimitExceeded inside the actor (it has no separate hard kill).
@dramatiq.actor(
    queue_name=QUEUE, store_results=True, max_retries=0, time_limit=int(settings.report_time_limit_seconds * 1000)
)
def generate_report(rows: list[float]) -> dict[str, float]:
    for done, row in enumerate(rows, start=1):
        work.process_row(row)
        report_progress(done, len(rows))
    return work.summary(rows)


@dramatiq.actor(queue_name=QUEUE, store_results=True, max_retries=0)
def make_thumbnail(stored_name: str) -> dict[str, Any]:
    return thumbnails.make_thumbnail(stored_name)
