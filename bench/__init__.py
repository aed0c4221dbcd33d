"""Measure BackgroundTasks, Celery, RQ and Dramatiq on this machine: ``python -m bench``.

See bench/README.md for what each figure means and how to read the results.
"""
