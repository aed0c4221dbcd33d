"""Settings, read once from environment variables, with defaults that work locally.

The defaults match `make services`: its Redis listens on localhost:6379 and its
mail catcher on localhost:8025, so the stage runs by hand with nothing set.
"""

from urllib.parse import urlsplit, urlunsplit

from pydantic_settings import BaseSettings


class Settings(BaseSettings):
    # Each field is read from the environment variable of the same name in capitals.
    smtp_host: str = "localhost"
    smtp_port: int = 8025
    smtp_sender: str = "Background jobs tutorial <noreply@example.com>"
    smtp_timeout_seconds: float = 10.0
    redis_url: str = "redis://localhost:6379/0"
    # How long a finished job's status and result are kept, and so how long its id is known.
    result_expires_seconds: int = 3600
    # How long the API waits for Redis before it answers 503 instead of hanging.
    enqueue_timeout_seconds: float = 3.0
    # The example tasks are slow on purpose, so you can watch their status change.
    add_delay_seconds: float = 3.0
    report_step_seconds: float = 0.5

    @property
    def result_backend_url(self) -> str:
        """The same Redis server as REDIS_URL, the next database: redis://host:6379/0 -> /1.

        Queued messages and job results then never mix, and `redis-cli -n 1 keys '*'`
        shows only results.
        """
        parts = urlsplit(self.redis_url)
        database = int(parts.path.strip("/") or 0)
        return urlunsplit(parts._replace(path=f"/{database + 1}"))


settings = Settings()
