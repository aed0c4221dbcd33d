"""Change this process's environment variables for a while, and put them back afterwards."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

# Settings that send a stage's jobs or results to another Redis than REDIS_URL: Celery reads the
# first two in place of the broker and backend it is given; stages 2-5 read RESULT_BACKEND_URL.
# A learner may have exported them; the tests and the demo unset them, so REDIS_URL alone decides.
REDIS_ELSEWHERE = ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "RESULT_BACKEND_URL")

# What make hands the commands it runs: under `make test VENV=.venv-3.13 PYTHON=...`, a make that a
# test starts (a README's `make services`) would take VENV and PYTHON from them. The tests unset them.
MAKE_VARIABLES = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")


@contextmanager
def changed_environment(changes: Mapping[str, str | None]) -> Iterator[None]:
    """Set each variable to its value (None: unset it) inside the block; restore them all after.

    Child processes started inside the block inherit the changes.
    """
    saved = {name: os.environ.get(name) for name in changes}
    try:
        for name, value in changes.items():
            _put(name, value)
        yield
    finally:
        for name, value in saved.items():
            _put(name, value)


def _put(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
