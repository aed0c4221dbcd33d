"""Stage 4: the same job API on Celery, RQ and Dramatiq, side by side, and a safe image upload.

Unlike stages 2 and 3, the package does not import its Celery app: the RQ and Dramatiq workers
import this package too (an RQ job, in every forked child), and need none of Celery. So the
Celery worker names the module: celery -A stage4_rq_dramatiq.celery_app worker
"""
