"""Trainer: Celery workers that curate per-agent data, train LoRAs, evaluate and publish."""
