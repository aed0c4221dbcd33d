"""Stage 2: Celery with Redis, a worker process, and a job API that tells the truth."""
