"""Celery workers: a thin task per job that supervises a training process, and the training process itself."""
