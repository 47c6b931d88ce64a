"""Property-based API tests (schemathesis) against the real app under uvicorn, on PostgreSQL
and on SQLite: every operation, valid and invalid inputs, no server error, responses as the
schema documents them.

Inference points at a closed port for the sweep (debates then fail with 503 and a JSON reason,
which is allowed); the debate endpoints also run a few examples against the tiny vLLM.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)
from sqlalchemy.orm import Session, sessionmaker

from maft.db import crud, migrate
from maft.db.session import make_engine, make_session_factory
from services.gateway.settings import GatewaySettings
from tests.fixtures.gateway import UNREACHABLE, LiveServer, make_keys, settings_for
from tests.fixtures.vllm import VllmServer

# Examples per operation and generation mode; debates against vLLM get far fewer.
SWEEP_EXAMPLES, DEBATE_EXAMPLES = 25, 4
DEBATE_OPERATIONS = ("POST /v1/debates", "POST /v1/chat/completions")
ALLOWED_5XX = (503, 504)  # inference unavailable / timed out, not ready: with a JSON reason
REPORT = Path(__file__).resolve().parents[2] / "bench" / "results" / "schemathesis.json"


class Tally:
    """What the sweep sent and got, per operation."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.statuses: Counter[str] = Counter()
        self.server_errors: list[str] = []

    def record(self, label: str, status: int, body: str) -> None:
        """Count one response; keep any server error other than 503/504 with a reason."""
        self.calls[label] += 1
        self.statuses[f"{label} {status}"] += 1
        reason = '"message"' in body or '"checks"' in body  # errors; /readyz's checks
        if status >= 500 and not (status in ALLOWED_5XX and reason):
            self.server_errors.append(f"{label} -> {status}: {body[:300]}")

    def write(self, name: str) -> None:
        """Add this sweep's counts to bench/results/schemathesis.json."""
        REPORT.parent.mkdir(parents=True, exist_ok=True)
        data = json.loads(REPORT.read_text()) if REPORT.exists() else {}
        data[name] = {"examples": sum(self.calls.values()), "operations": len(self.calls),
                      "server_errors": len(self.server_errors), "per_operation":
                      dict(self.calls), "statuses": dict(self.statuses)}
        REPORT.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def sweep(url: str, headers: dict[str, str], tally: Tally, examples: int,
          only: tuple[str, ...] | None = None) -> None:
    """Every operation (or `only` these), positive and negative examples, checked."""
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    for result in schema.get_all_operations():
        operation = result.ok()
        if only is not None and operation.label not in only:
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            run_operation(operation, mode, headers, tally, examples)


def run_operation(operation: Any, mode: GenerationMode, headers: dict[str, str], tally: Tally,
                  examples: int) -> None:
    """`examples` cases of one operation in one mode."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def check(case: Any) -> None:
        response = case.call(headers=headers, timeout=120)
        tally.record(operation.label, response.status_code, response.text)
        assert response.status_code < 500 or response.status_code in ALLOWED_5XX, response.text
        if response.status_code != 404 or operation.label.startswith("GET /v1/debates/"):
            case.validate_response(response, checks=[response_schema_conformance,
                                                     content_type_conformance])

    try:
        check()
    except Unsatisfiable:
        assert mode == GenerationMode.NEGATIVE  # nothing invalid to send (no parameters)


def sweep_settings(db_url: str, inference_url: str, base: str, home: Path) -> GatewaySettings:
    """Limits out of the way (the sweep tests inputs, not rate limits); training runs queue
    in a filesystem broker under the test's own home."""
    return settings_for(db_url, inference_url, base, inference_timeout_s=5.0,
                        rate_limit_per_minute=0, debate_rate_limit_per_minute=0,
                        broker_url="filesystem://", home=home, max_debates_queued=64,
                        debate_timeout_s=60.0)


@pytest.fixture(params=["postgres", "sqlite"])
def database(request: pytest.FixtureRequest, tmp_path: Path
             ) -> Iterator[tuple[str, str, sessionmaker[Session]]]:
    """(name, url, sessions) of a migrated database with society v0 = 'offline-base'."""
    if request.param == "postgres":
        yield "postgres", request.getfixturevalue("pg_url"), request.getfixturevalue(
            "offline_db")
        return
    url = f"sqlite:///{tmp_path / 'maft.db'}"
    migrate.upgrade(url)
    sessions = make_session_factory(make_engine(url))
    with sessions() as db, db.begin():
        crud.ensure_base_society(db, base_model_name="offline-base")
    yield "sqlite", url, sessions


def test_every_operation_without_inference(
        database: tuple[str, str, sessionmaker[Session]], tmp_path: Path) -> None:
    name, url, sessions = database
    admin = make_keys(sessions).admin
    tally = Tally()
    with LiveServer(sweep_settings(url, UNREACHABLE, "offline-base", tmp_path)) as live:
        sweep(live.url, {"Authorization": f"Bearer {admin}"}, tally, SWEEP_EXAMPLES)
    tally.write(f"sweep-{name}")
    assert tally.server_errors == []
    assert len(tally.calls) >= 10 and sum(tally.calls.values()) > 200


@pytest.mark.vllm
def test_debate_operations_on_the_tiny_model(pg_url: str, vllm_tiny: VllmServer,
                                              pg_engine: Any, tmp_path: Path) -> None:
    from tests.fixtures.db import reset

    reset(pg_engine, vllm_tiny.served_name)
    admin = make_keys(make_session_factory(pg_engine)).admin
    tally = Tally()
    settings_ = sweep_settings(pg_url, vllm_tiny.url, vllm_tiny.served_name, tmp_path)
    with LiveServer(settings_) as live:
        sweep(live.url, {"Authorization": f"Bearer {admin}"}, tally, DEBATE_EXAMPLES,
              only=DEBATE_OPERATIONS)
    tally.write("debates-vllm-postgres")
    assert tally.server_errors == []
    assert any(k.endswith(" 201") or k.endswith(" 200") for k in tally.statuses)
