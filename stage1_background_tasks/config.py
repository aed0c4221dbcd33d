"""Settings, read once from environment variables, with defaults that work locally.

The defaults match `make services`: its mail catcher listens on localhost:8025 and
its webhook receiver on localhost:8090, so the stage runs by hand with nothing set.
"""

from pathlib import Path

from pydantic_settings import BaseSettings


class Settings(BaseSettings):
    # Each field is read from the environment variable of the same name in capitals.
    smtp_host: str = "localhost"
    smtp_port: int = 8025
    smtp_sender: str = "Background jobs tutorial <noreply@example.com>"
    smtp_timeout_seconds: float = 10.0
    webhook_url: str = "http://localhost:8090/webhook"
    webhook_timeout_seconds: float = 5.0
    # Beside this file, not relative to the working directory: the log is in the same
    # place wherever the server was started from, and easy to find next to the code.
    audit_log_path: Path = Path(__file__).resolve().parent / "audit.log"


settings = Settings()
