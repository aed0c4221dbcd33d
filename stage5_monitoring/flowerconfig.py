"""Flower's settings for this stage: celery -A stage5_monitoring flower --conf=stage5_monitoring/flowerconfig.py

Flower runs this file at start-up and takes each name below as one of its options. The
port and the credentials come from Flower's own environment variables, FLOWER_PORT
(5555 if unset) and FLOWER_BASIC_AUTH (user:password), never from a file in the repository.
"""

import os
import sys

from tornado.options import options

# Flower's page and API show every job's arguments and can stop workers: no credentials, no Flower.
# (options holds what FLOWER_... variables and the command line have set so far.)
# A user and a password, neither empty: "admin:" would let anyone in as admin.
if not options.basic_auth or not all(all(credential.partition(":")[::2]) for credential in options.basic_auth):
    sys.exit(
        "Flower refuses to start without credentials: set FLOWER_BASIC_AUTH=user:password in its environment,\n"
        'for example: export FLOWER_BASIC_AUTH="admin:$(openssl rand -hex 12)"'
    )

# Loopback only, unless FLOWER_ADDRESS says otherwise: Flower's /metrics and /healthcheck
# answer without credentials, whatever basic_auth says.
address = os.environ.get("FLOWER_ADDRESS", "127.0.0.1")
# Forget a worker that has been offline for 10 minutes, and its metrics (their `worker` label
# names a process: every restart makes new series).
purge_offline_workers = 600
