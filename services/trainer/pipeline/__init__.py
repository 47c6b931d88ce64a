"""The steps of a training run: curate -> train_agent x 2N -> evaluate -> publish (and runs.py,
the lifecycle they share: heartbeats, progress, fan-in, failure, reaping, auto-start)."""
