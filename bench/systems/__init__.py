"""The systems under test: each one's task module, worker command and producer.

Every system runs the same no-op task (bench.systems.noop.record_run) against the
same Redis; the worker modules read that Redis's URL from BENCH_REDIS_URL.
"""
