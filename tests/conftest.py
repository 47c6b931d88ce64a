"""Shared fixtures. Real Postgres, Redis and vLLM servers; see tests/fixtures/."""

import importlib.util

pytest_plugins = ["tests.fixtures.db", "tests.fixtures.gateway"]
if importlib.util.find_spec("tests.fixtures.vllm"):  # TEMP while the module is written
    pytest_plugins.append("tests.fixtures.vllm")
