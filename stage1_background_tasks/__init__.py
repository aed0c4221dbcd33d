"""Stage 1: FastAPI BackgroundTasks, run after the response, in the same process."""
