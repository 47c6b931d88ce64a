"""Shared fixtures. Real Postgres, Redis, Celery workers and vLLM servers; see tests/fixtures/."""

pytest_plugins = [
    "tests.fixtures.db",
    "tests.fixtures.vllm",
    "tests.fixtures.gateway",
    "tests.fixtures.trainer",
    "tests.fixtures.browser",
]
