"""Settings, read once from environment variables, with defaults that work locally.

The defaults match `make services`: its Redis listens on localhost:6379 and its
mail catcher on localhost:8025, so the stage runs by hand with nothing set.
"""

from pydantic_settings import BaseSettings


class Settings(BaseSettings):
    # Each field is read from the environment variable of the same name in capitals.
    smtp_host: str = "localhost"
    smtp_port: int = 8025
    smtp_sender: str = "Background jobs tutorial <noreply@example.com>"
    smtp_timeout_seconds: float = 10.0
    # Where jobs wait (the broker). Any Redis URL: redis://, rediss:// (TLS), unix:///path/redis.sock.
    redis_url: str = "redis://localhost:6379/0"
    # Where job states and results are kept (the result backend); empty: the same Redis as REDIS_URL.
    result_backend_url: str = ""
    # How long a job's state and result are kept, and so how long its id is known.
    result_expires_seconds: int = 3600
    # The longest the API waits for any one Redis call before it answers 503 instead of hanging.
    redis_timeout_seconds: float = 3.0
    # GET /health answers within about this long, also when Redis does not answer.
    health_timeout_seconds: float = 1.0
    # Each worker notes in Redis which queues it consumes, five times in this many seconds; a
    # note older than this counts as a worker gone (killed, or cut off from Redis).
    worker_note_expiry_seconds: float = 15.0
    # The example tasks are slow on purpose, so you can watch their status change.
    add_delay_seconds: float = 3.0
    report_step_seconds: float = 0.5


settings = Settings()
