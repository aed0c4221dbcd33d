"""The mail catcher, the webhook receiver and the process helper that tests and demo share."""

from __future__ import annotations

import contextlib
import os
import signal
import smtplib
import socket
import sys
import threading
from email.message import EmailMessage
from pathlib import Path

import httpx
import psutil
import pytest

from tutorial.mail import SmtpSink
from tutorial.processes import ManagedProcess, UvicornServer, free_port, stop_all
from tutorial.services import settings_for_the_stages
from tutorial.waiting import WaitTimeout, wait_until
from tutorial.webhooks import WebhookReceiver


def test_the_mail_catcher_keeps_a_real_smtp_message(smtp_sink: SmtpSink) -> None:
    message = EmailMessage()
    message["From"] = "a@example.com"
    message["To"] = "b@example.com"
    message["Subject"] = "Grüße"
    message.set_content("body text")
    with smtplib.SMTP("127.0.0.1", smtp_sink.port, timeout=10) as smtp:
        smtp.send_message(message)
    (mail,) = smtp_sink.wait_for_messages(1)
    assert (mail.mail_from, mail.rcpt_tos, mail.subject, mail.body) == (
        "a@example.com",
        ["b@example.com"],
        "Grüße",
        "body text",
    )


def test_the_webhook_receiver_records_and_can_hold_a_request(webhook_receiver: WebhookReceiver) -> None:
    webhook_receiver.hold()
    result: list[int] = []
    thread = threading.Thread(
        target=lambda: result.append(httpx.post(webhook_receiver.url, json={"a": 1}, timeout=10).status_code)
    )
    thread.start()
    webhook_receiver.wait_for_event("held")
    assert result == []
    webhook_receiver.release()
    thread.join(timeout=10)
    assert result == [200]
    assert webhook_receiver.requests[0].json() == {"a": 1}


def test_wait_until_says_what_it_saw_when_the_deadline_passes() -> None:
    with pytest.raises(WaitTimeout, match=r"waited 0.1s for the answer; last seen: 41"):
        wait_until(lambda: False, timeout=0.1, what="the answer", seen=lambda: 41)


def test_stopping_a_process_also_stops_what_it_forked(tmp_path: Path) -> None:
    # The child forks a grandchild that ignores SIGTERM, as a worker's pool process might.
    script = (
        "import os, signal, subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', "
        "'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)'])\n"
        "print('grandchild', child.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    process = ManagedProcess("forker", [sys.executable, "-c", script], log_dir=tmp_path).start()
    process.wait_for_output("grandchild")
    grandchild = int(process.output().split("grandchild")[1].split()[0])
    process.stop(grace=1)
    assert not process.is_running()
    wait_until(lambda: not is_alive(grandchild), timeout=10, what=f"grandchild {grandchild} to be gone")


def test_processes_stopped_together_share_one_grace_period(tmp_path: Path) -> None:
    # Each one takes 1 s to stop cleanly, as a Celery worker does: all are asked at once, none waits for another.
    script = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: (print('stopping', flush=True), time.sleep(1), sys.exit(0)))\n"
        "print('ready', flush=True)\n"
        "time.sleep(600)\n"
    )
    processes = [ManagedProcess(f"slow-{n}", [sys.executable, "-c", script], log_dir=tmp_path) for n in range(3)]
    for process in processes:
        process.start().wait_for_output("ready")
    terminated = []

    def note_terminate(process: ManagedProcess) -> None:
        if process.name not in [name for name, _ in terminated]:  # the first SIGTERM to each
            terminated.append((process.name, [p.name for p in processes if not p.is_running()]))

    with pytest.MonkeyPatch.context() as patch:
        original = ManagedProcess.terminate
        patch.setattr(ManagedProcess, "terminate", lambda self: (note_terminate(self), original(self)))
        stop_all(processes, grace=10)

    # Every one was asked to stop before any had stopped, and each stopped cleanly (not killed).
    assert terminated == [("slow-0", []), ("slow-1", []), ("slow-2", [])]
    assert [process.popen.returncode for process in processes] == [0, 0, 0]
    assert all("stopping" in process.output() for process in processes)


def test_a_free_port_is_below_the_ports_of_outgoing_connections_and_bindable() -> None:
    outgoing = Path("/proc/sys/net/ipv4/ip_local_port_range")  # Linux; macOS and Windows start at 49152
    first_outgoing = int(outgoing.read_text().split()[0]) if outgoing.exists() else 49152
    ports = {free_port() for _ in range(20)}
    assert all(1024 < port < first_outgoing for port in ports), ports
    assert len(ports) > 1, "random, so that two test processes rarely pick the same one"


def test_a_uvicorn_whose_free_port_was_taken_meanwhile_starts_on_another(tmp_path: Path) -> None:
    server = UvicornServer("stage1_background_tasks.main:app", log_dir=tmp_path, ready_path="/docs")
    taken = server.port
    with socket.socket() as squatter:  # what another test process's server does in the meantime
        squatter.bind(("127.0.0.1", taken))
        squatter.listen()
        with server:
            assert server.port != taken
            assert httpx.get(f"{server.base_url}/docs", timeout=10).status_code == 200


def test_a_process_started_by_a_parent_that_ignores_ctrl_c_still_stops_on_sigint(tmp_path: Path) -> None:
    # `make test &`, nohup, some CI wrappers: a shell without job control starts a background
    # job with SIGINT ignored, and an ignored signal stays ignored in every child it execs.
    parent = (
        "import signal, sys\n"
        "from tutorial.processes import ManagedProcess, python_command\n"
        "print('parent SIGINT:', signal.getsignal(signal.SIGINT).name, flush=True)\n"
        "sleeper = python_command('-c', 'import time; print(\"sleeping\", flush=True); time.sleep(600)')\n"
        "child = ManagedProcess('sleeper', sleeper, log_dir=sys.argv[1]).start()\n"
        "print('child', child.pid, flush=True)\n"
        "print('child exited with', child.popen.wait(timeout=30), flush=True)\n"
    )
    in_background = ["sh", "-c", '"$0" -c "$1" "$2" & wait', sys.executable, parent, str(tmp_path / "child")]
    with ManagedProcess("background-parent", in_background, log_dir=tmp_path) as shell:
        shell.wait_for_output("child ")
        assert "parent SIGINT: SIG_IGN" in shell.output(), shell.describe()
        child = int(shell.output().split("child ")[1].split()[0])
        try:
            # Once it sleeps: an interrupt that lands while Python starts up ends it in other ways.
            child_log = tmp_path / "child" / "sleeper.log"
            wait_until(lambda: "sleeping" in child_log.read_text(), timeout=10, what="the child to sleep")
            os.kill(child, signal.SIGINT)
            shell.wait_for_output(f"child exited with {-signal.SIGINT}", timeout=10)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child, signal.SIGKILL)  # its own session: the shell's stop does not reach it


def is_alive(pid: int) -> bool:
    # A killed process whose parent is gone can linger as a zombie until it is reaped.
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.parametrize(
    ("redis_url", "smtp_port", "webhook_port", "to_set"),
    [
        ("redis://localhost:6379/0", 8025, 8090, []),
        ("redis://127.0.0.1:6379/0", 8025, 8090, []),
        ("redis://127.0.0.1:6380/0", 8025, 8090, ["REDIS_URL=redis://127.0.0.1:6380/0"]),
        ("redis://localhost:6379/3", 8025, 8090, ["REDIS_URL=redis://localhost:6379/3"]),
        ("redis://:pw@localhost:6379/0", 8025, 8090, ["REDIS_URL=redis://:**@localhost:6379/0"]),
        (
            "redis://localhost:6379/0",
            2525,
            9000,
            ["SMTP_PORT=2525", "WEBHOOK_URL=http://127.0.0.1:9000/webhook"],
        ),
    ],
)
def test_make_services_names_what_a_stage_must_set_to_find_services_off_their_defaults(
    redis_url: str, smtp_port: int, webhook_port: int, to_set: list[str]
) -> None:
    assert settings_for_the_stages(redis_url, smtp_port, webhook_port) == to_set
