"""Settings, read once from environment variables, with defaults that work locally.

The defaults match `make services`: its Redis listens on localhost:6379, its mail
catcher on localhost:8025 and its webhook receiver on localhost:8090, so the stage
runs by hand with nothing set.
"""

from pathlib import Path

from pydantic import model_validator
from pydantic_settings import BaseSettings


class Settings(BaseSettings):
    # Each field is read from the environment variable of the same name in capitals.
    smtp_host: str = "localhost"
    smtp_port: int = 8025
    smtp_sender: str = "Background jobs tutorial <noreply@example.com>"
    smtp_timeout_seconds: float = 10.0
    webhook_url: str = "http://localhost:8090/webhook"
    # Per attempt: a receiver that does not answer in time counts as a failed attempt.
    webhook_timeout_seconds: float = 5.0
    # Where jobs wait (the broker). Any Redis URL: redis://, rediss:// (TLS), unix:///path/redis.sock.
    redis_url: str = "redis://localhost:6379/0"
    # Where job states and results are kept (the result backend); empty: the same Redis as REDIS_URL.
    result_backend_url: str = ""
    # How long a job's state and result are kept, and so how long its id is known: a day, as
    # long as an Idempotency-Key (stage 2 kept them an hour).
    result_expires_seconds: int = 86400
    # The longest the API waits for any one Redis call before it answers 503 instead of hanging.
    redis_timeout_seconds: float = 3.0
    # GET /health answers within about this long, also when Redis does not answer.
    health_timeout_seconds: float = 1.0
    # Each worker notes in Redis which queues it consumes, five times in this many seconds; a
    # note older than this counts as a worker gone (killed, or cut off from Redis).
    worker_note_expiry_seconds: float = 15.0
    # Retries: attempt n waits a random time between 0 and min(max, base * 2**n) ("full jitter").
    webhook_max_retries: int = 5
    email_max_retries: int = 5
    retry_backoff_seconds: float = 2.0
    retry_backoff_max_seconds: float = 300.0
    # A job a worker took but did not acknowledge goes back to the queue after this long
    # (a worker killed mid-job). Longer than any job, and than any countdown (see max_delay).
    visibility_timeout_seconds: int = 3600
    # The longest countdown POST /jobs/add accepts; never more than the visibility timeout allows.
    max_delay_seconds: int = 3000
    # A repeated POST with the same Idempotency-Key answers the same job for this long (at most
    # as long as the job is known: see idempotency_key_seconds).
    idempotency_ttl_seconds: int = 86400
    # The example tasks are slow on purpose, so you can watch their status change.
    add_delay_seconds: float = 3.0
    report_step_seconds: float = 0.5
    # A report stops cleanly at the soft limit; the worker kills it at the hard one.
    report_soft_time_limit_seconds: float = 30.0
    report_time_limit_seconds: float = 40.0
    # The periodic digest of dead letters (run by `celery beat`), and who gets it.
    digest_interval_seconds: float = 3600.0
    admin_email: str = "admin@example.com"
    # Webhook deliveries per worker (a Celery rate limit: per worker, not for all of them): "10/s", "100/m".
    webhook_rate_limit: str = "10/s"
    # Processes per worker. Celery's default, one per CPU, counts per worker: with a worker per
    # queue it multiplies (3 workers on 8 CPUs: 24 processes). Two each, unless set.
    worker_concurrency: int = 2
    # DEBUG, INFO, WARNING, ...: for the API's JSON log lines (a worker takes --loglevel).
    log_level: str = "INFO"

    # Uploads: where the API stores them (server-chosen names only), and the largest it accepts. In your
    # home, not in a shared /tmp, where another user could make the folder first, or read it.
    upload_dir: str = str(Path.home() / ".cache" / "stage5_monitoring" / "uploads")
    upload_max_bytes: int = 5 * 1024 * 1024
    # A thumbnail's longest side, in pixels.
    thumbnail_size: int = 128

    @model_validator(mode="after")
    def soft_limit_comes_first(self) -> "Settings":
        # Celery refuses to publish a task whose soft limit is longer than its hard one.
        if self.report_soft_time_limit_seconds > self.report_time_limit_seconds:
            raise ValueError("REPORT_SOFT_TIME_LIMIT_SECONDS must not be longer than REPORT_TIME_LIMIT_SECONDS")
        return self

    @property
    def retry_backoff_cap_seconds(self) -> float:
        """A retry's wait is held by the worker like a countdown: it too must end before the visibility timeout."""
        return min(self.retry_backoff_max_seconds, self.visibility_timeout_seconds - 1)

    @property
    def idempotency_key_seconds(self) -> int:
        """How long a key is kept: never longer than its job is known, or a repeated POST would
        answer the id of a job that has expired (404)."""
        return min(self.idempotency_ttl_seconds, self.result_expires_seconds)

    @property
    def longest_delay_seconds(self) -> int:
        """A countdown must end before the visibility timeout, or the job is delivered twice
        (and before its mark expires, or a job that waits its turn would answer 404)."""
        return min(self.max_delay_seconds, self.visibility_timeout_seconds - 1, self.result_expires_seconds - 1)


settings = Settings()
