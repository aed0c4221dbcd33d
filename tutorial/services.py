"""`make services`: the local services a stage needs, in the foreground, until Ctrl-C.

By default the ports are the stages' defaults, so a stage started by hand finds them
with nothing to set: Redis on 6379 (the one already there, else one started on 6379),
the mail catcher on 8025, the webhook receiver on 8090. With other ports (or a
REDIS_URL of its own), it prints the variables a stage needs to find them.

With ``flower_port``, it also starts stage 5's Flower there (the ``flower`` line of
stage5_monitoring/Procfile), on the same Redis, with the credentials of FLOWER_BASIC_AUTH.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlsplit

from tutorial.mail import SmtpSink
from tutorial.processes import REPO_ROOT, ManagedProcess, port_is_open
from tutorial.redis_server import DEFAULT_PORT, RedisUnavailable, database_of, redacted, resolve_redis
from tutorial.stopping import print_error, stop_cleanly_on_signals
from tutorial.waiting import WaitTimeout
from tutorial.webhooks import WebhookReceiver

REDIS_PORT = DEFAULT_PORT
SMTP_PORT = 8025
WEBHOOK_PORT = 8090
FLOWER_PORT = 5555
NO_FLOWER_CREDENTIALS = (
    "Flower needs credentials: set FLOWER_BASIC_AUTH=user:password first, for example\n"
    '  export FLOWER_BASIC_AUTH="admin:$(openssl rand -hex 12)"\n'
    "then start make services again (its Flower asks for them in the browser and the API)."
)
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


def settings_for_the_stages(redis_url: str, smtp_port: int, webhook_port: int) -> list[str]:
    """``NAME=value`` for each service a stage would not find at its default (see the stages' config.py)."""
    settings = []
    redis = urlsplit(redis_url)
    redis_is_default = (
        redis.scheme == "redis"
        and redis.hostname in LOCAL_HOSTS
        and (redis.port or DEFAULT_PORT) == DEFAULT_PORT
        and database_of(redis_url) == 0
        and redis.password is None
    )
    if not redis_is_default:
        settings.append(f"REDIS_URL={redacted(redis_url)}")
    if smtp_port != SMTP_PORT:
        settings.append(f"SMTP_PORT={smtp_port}")
    if webhook_port != WEBHOOK_PORT:
        settings.append(f"WEBHOOK_URL=http://127.0.0.1:{webhook_port}/webhook")
    return settings


def run_services(
    redis_port: int = REDIS_PORT,
    smtp_port: int = SMTP_PORT,
    webhook_port: int = WEBHOOK_PORT,
    flower_port: int | None = None,
) -> int:
    stop_cleanly_on_signals()
    user, _, password = os.environ.get("FLOWER_BASIC_AUTH", "").partition(":")
    if flower_port is not None and not (user and password):  # "admin:" would let anyone in as admin
        print_error(NO_FLOWER_CREDENTIALS)
        return 1
    ports = [("mail catcher", smtp_port), ("webhook receiver", webhook_port)]
    for name, port in ports + ([("Flower", flower_port)] if flower_port is not None else []):
        if port_is_open("127.0.0.1", port):
            print_error(
                f"Port {port} (the {name}) is already in use: is `make services` running in another "
                f"terminal? Stop that one, or whatever listens there (`lsof -i :{port}` shows it)."
            )
            return 1
    try:
        with ExitStack() as stack:
            redis_url = f"redis://localhost:{redis_port}/0"
            redis = stack.enter_context(resolve_redis(default_url=redis_url, start_port=redis_port))
            smtp = stack.enter_context(SmtpSink(port=smtp_port))
            webhooks = stack.enter_context(WebhookReceiver(port=webhook_port))
            print(f"Redis             {redacted(redis.url)}  ({redis.source})")
            print(f"Mail catcher      smtp://127.0.0.1:{smtp.port}")
            print(f"Webhook receiver  {webhooks.url}")
            if flower_port is not None:
                start_flower(stack, redis.url, flower_port)
                print(f"Flower (stage 5)  http://127.0.0.1:{flower_port}  (the user and password of FLOWER_BASIC_AUTH)")
            settings = settings_for_the_stages(redis.url, smtp.port, webhooks.port)
            if settings:
                print("Not all of these are the stages' defaults: in the terminal where you start a stage, first run")
                print(f"  export {' '.join(settings)}")
            else:
                print("These are the stages' defaults: nothing to set.")
            print("What arrives is printed below. Ctrl-C stops all.", flush=True)
            _print_arrivals(smtp, webhooks)
    except (RedisUnavailable, WaitTimeout) as error:
        print_error(str(error))
        return 1
    except KeyboardInterrupt:
        print("\nStopped everything `make services` started.")
    return 0


def procfile_lines() -> dict[str, str]:
    """Stage 5's Procfile: process name -> command."""
    lines = {}
    for line in (REPO_ROOT / "stage5_monitoring" / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, command = line.partition(":")
            lines[name.strip()] = command.strip()
    return lines


def start_flower(stack: ExitStack, redis_url: str, port: int) -> ManagedProcess:
    """Stage 5's Flower, from its Procfile line, on ``redis_url``; stopped with everything else."""
    log_dir = Path(tempfile.mkdtemp(prefix="tutorial-services-"))
    stack.callback(shutil.rmtree, log_dir, ignore_errors=True)
    env = {**os.environ, "REDIS_URL": redis_url, "FLOWER_PORT": str(port)}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    command = procfile_lines()["flower"]
    flower = stack.enter_context(ManagedProcess("flower", ["bash", "-c", f"exec {command}"], env=env, log_dir=log_dir))
    flower.wait_for_http(f"http://127.0.0.1:{port}/healthcheck", timeout=30)
    return flower


def _print_arrivals(smtp: SmtpSink, webhooks: WebhookReceiver) -> None:
    """Print each e-mail and webhook as it arrives, until interrupted."""
    shown_mail = shown_hooks = 0
    while True:
        while shown_mail < len(smtp.messages):
            mail = smtp.messages[shown_mail]
            print(f"[mail] to {', '.join(mail.rcpt_tos)}: {mail.subject!r}\n       {mail.body}", flush=True)
            shown_mail += 1
        while shown_hooks < len(webhooks.requests):
            request = webhooks.requests[shown_hooks]
            print(f"[webhook] {request.method} {request.path} {request.body.decode(errors='replace')}", flush=True)
            shown_hooks += 1
        time.sleep(0.2)
