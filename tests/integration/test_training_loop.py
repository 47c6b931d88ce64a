"""The self-improvement loop on real parts: Redis, Celery worker processes, PEFT training,
the tiny vLLM server (which loads the published adapters), Postgres and the gateway."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from maft.db import crud
from maft.db.models import utcnow
from maft.db.session import make_session_factory
from services.gateway.settings import GatewaySettings
from tests.fixtures.db import reset
from tests.fixtures.gateway import Keys, gateway_client, make_keys, settings_for
from tests.fixtures.trainer import REDIS_URL, Worker, trainer_env
from tests.fixtures.trainer import seed_training_debates as seed
from tests.fixtures.vllm import VllmServer

pytestmark = [pytest.mark.vllm, pytest.mark.training]
ENDED = ("succeeded", "failed", "skipped")


@pytest.fixture
def db(pg_engine: Engine, vllm_tiny: VllmServer) -> sessionmaker[Session]:
    """Empty database; society v0 is the tiny base model."""
    reset(pg_engine, vllm_tiny.served_name)
    return make_session_factory(pg_engine)


@pytest.fixture
def keys(db: sessionmaker[Session]) -> Keys:
    """API keys."""
    return make_keys(db)


@pytest.fixture
def settings(pg_url: str, vllm_tiny: VllmServer, db: sessionmaker[Session]) -> GatewaySettings:
    """Gateway on the tiny server and the test Redis."""
    return settings_for(pg_url, vllm_tiny.url, vllm_tiny.served_name,
                        adapter_store=vllm_tiny.store.root, broker_url=REDIS_URL)


def worker(workers: list[Worker], pg_url: str, server: VllmServer, tmp: Path,
           beat: bool = False, **extra: object) -> Worker:
    """Start a real worker process for this test."""
    started = Worker(trainer_env(pg_url, server, tmp / "home", **extra), tmp / "worker.log",
                     beat=beat)
    workers.append(started)
    return started


async def wait_run(client: httpx.AsyncClient, run_id: str, timeout: float = 300,
                   until: Any = None) -> dict[str, Any]:
    """Poll a run until it ends (or `until(run)` holds)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        run = (await client.get(f"/v1/training-runs/{run_id}")).json()
        if (until and until(run)) or (not until and run["status"] in ENDED):
            return run  # type: ignore[no-any-return]
        await asyncio.sleep(0.5)
    raise AssertionError(f"run not done in {timeout} s: {run}")


def active_version(db: sessionmaker[Session]) -> int:
    """The pointer."""
    with db() as session:
        return crud.active_society(session).version


async def test_run_trains_gates_promotes_and_the_next_debate_uses_it(
        settings: GatewaySettings, keys: Keys, db: sessionmaker[Session], workers: list[Worker],
        pg_url: str, vllm_tiny: VllmServer, tmp_path: Path) -> None:
    seed(db, vllm_tiny.served_name)
    worker(workers, pg_url, vllm_tiny, tmp_path)
    async with gateway_client(settings, keys.admin) as client:
        started = await client.post("/v1/training-runs", json={
            "task": "arithmetic", "hyperparameters": {"max_steps": 3}})
        assert started.status_code == 202, started.text
        run = await wait_run(client, started.json()["id"])
        assert run["status"] == "succeeded", run
        version = run["candidate_society_version"]
        adapters = (await client.get("/v1/adapters")).json()
        debate = (await client.post("/v1/debates", json={"question": "What is 2+2?"})).json()
        ready = await client.get("/readyz")
        rollback = await client.post("/v1/societies/0/activate")
        after = (await client.post("/v1/debates", json={"question": "What is 2+2?"})).json()
    assert run["decision"] == "promote" and adapters["active_version"] == version
    stats = run["dataset_stats"]["agents"]
    assert stats["generator-0"]["size"] == 6 and stats["generator-1"]["size"] == 4
    assert stats["critic-2"]["counts"]["C-"] == 2 and stats["critic-2"]["counts"]["C+"] == 1
    assert all(s["status"] == "done" for s in run["steps"]), run["steps"]
    assert {"active", "candidate"} <= set(run["evaluation"])
    first = debate["transcript"][0]["responses"]
    second = debate["transcript"][1]["responses"]
    assert [r["lora_name"] for r in first] == [f"gen-{i}@v{version}" for i in range(3)]
    assert [r["lora_name"] for r in second] == [f"crit-{i}@v{version}" for i in range(3)]
    assert ready.status_code == 200, ready.text
    assert rollback.status_code == 200 and rollback.json()["active_version"] == 0
    assert {r["lora_name"] for t in after["transcript"] for r in t["responses"]} == {
        vllm_tiny.served_name}
    for name in (f"gen-0@v{version}", f"crit-2@v{version}"):
        assert vllm_tiny.store.exists(name)
    with db() as session:  # what curation made of every response, kept with the run
        first_debate = crud.debate_records(session)[0].id
        outcomes = crud.outcomes_of_debate(session, debate_id=uuid.UUID(first_debate))
    found = {(o.role, o.agent_index): o.outcome for o in outcomes}
    assert found[("generator", 0)] == found[("generator", 1)] == "G"
    assert found[("generator", 2)] == "wrong" and found[("critic", 2)] == "C-"
    # Agent 0 never corrected anything, so with w = 2/3 none of its C+ joins its data.
    assert found[("critic", 0)] == "not_mixed" and found[("critic", 1)] in ("C+", "not_mixed")
    assert {o.label for o in outcomes} == {"5"}


async def test_too_little_data_is_skipped(settings: GatewaySettings, keys: Keys,
                                          workers: list[Worker], pg_url: str,
                                          vllm_tiny: VllmServer, tmp_path: Path) -> None:
    worker(workers, pg_url, vllm_tiny, tmp_path)
    async with gateway_client(settings, keys.admin) as client:
        started = await client.post("/v1/training-runs", json={})
        run = await wait_run(client, started.json()["id"], timeout=120)
    assert run["status"] == "skipped" and "too little data" in run["error"]


async def test_one_run_at_a_time(settings: GatewaySettings, keys: Keys, clean_redis: str) -> None:
    async with gateway_client(settings, keys.admin) as client:  # no worker: the run stays queued
        first = await client.post("/v1/training-runs", json={})
        second = await client.post("/v1/training-runs", json={})
    assert first.status_code == 202
    assert second.status_code == 409 and first.json()["id"] in second.json()["error"]["message"]


async def test_broken_adapter_is_never_activated(
        settings: GatewaySettings, keys: Keys, db: sessionmaker[Session], workers: list[Worker],
        pg_url: str, vllm_tiny: VllmServer, tmp_path: Path) -> None:
    seed(db, vllm_tiny.served_name)
    worker(workers, pg_url, vllm_tiny, tmp_path, max_lora_rank=1)  # rank 8 is not servable
    async with gateway_client(settings, keys.admin) as client:
        started = await client.post("/v1/training-runs", json={
            "hyperparameters": {"max_steps": 1}})
        run = await wait_run(client, started.json()["id"])
        adapters = (await client.get("/v1/adapters")).json()
    assert run["status"] == "failed" and "rank" in run["error"]
    assert adapters["active_version"] == 0
    candidate = next(s for s in adapters["societies"]
                     if s["version"] == run["candidate_society_version"])
    assert candidate["status"] == "rejected"


def _training(run: dict[str, Any]) -> bool:
    return any(s["name"].startswith("train:") and s["status"] == "running" and
               s["detail"].get("done", 0) >= 1 for s in run["steps"])


async def test_killed_pool_process_is_retried_without_double_publishing(
        settings: GatewaySettings, keys: Keys, db: sessionmaker[Session], workers: list[Worker],
        pg_url: str, vllm_tiny: VllmServer, tmp_path: Path) -> None:
    seed(db, vllm_tiny.served_name)
    w = worker(workers, pg_url, vllm_tiny, tmp_path)
    async with gateway_client(settings, keys.admin) as client:
        started = await client.post("/v1/training-runs", json={
            "hyperparameters": {"max_steps": 40}})
        await wait_run(client, started.json()["id"], until=_training)
        for pid in w.children():
            os.kill(pid, signal.SIGKILL)
        assert active_version(db) == 0
        run = await wait_run(client, started.json()["id"], timeout=600)
    assert run["status"] == "succeeded", run
    assert max(s["attempts"] for s in run["steps"]) == 2
    names = [s["detail"]["lora_name"] for s in run["steps"] if s["name"].startswith("train:")]
    assert len(names) == len(set(names)) == 6


async def test_killed_worker_leaves_the_society_and_the_run_is_failed(
        settings: GatewaySettings, keys: Keys, db: sessionmaker[Session], workers: list[Worker],
        pg_url: str, vllm_tiny: VllmServer, tmp_path: Path) -> None:
    seed(db, vllm_tiny.served_name)
    first = worker(workers, pg_url, vllm_tiny, tmp_path)
    async with gateway_client(settings, keys.admin) as client:
        started = await client.post("/v1/training-runs", json={
            "hyperparameters": {"max_steps": 40}})
        run_id = started.json()["id"]
        await wait_run(client, run_id, until=_training)
        first.kill()
        assert active_version(db) == 0
        worker(workers, pg_url, vllm_tiny, tmp_path, beat=True, run_lease_s=3)  # the reaper
        run = await wait_run(client, run_id, timeout=120)
    assert run["status"] == "failed" and "worker lost" in run["error"]
    assert active_version(db) == 0


async def test_beat_starts_a_run_when_enough_debates_arrive(
        settings: GatewaySettings, keys: Keys, db: sessionmaker[Session], workers: list[Worker],
        pg_url: str, vllm_tiny: VllmServer, tmp_path: Path) -> None:
    worker(workers, pg_url, vllm_tiny, tmp_path, beat=True, auto_retrain="true",
           auto_retrain_threshold=6, auto_retrain_interval_s=1)
    seed(db, vllm_tiny.served_name)
    async with gateway_client(settings, keys.admin) as client:
        deadline = time.time() + 60
        while time.time() < deadline:
            runs = (await client.get("/v1/training-runs")).json()["data"]
            if runs:
                break
            await asyncio.sleep(0.5)
        assert runs and runs[0]["trigger"] == "auto"
        run = await wait_run(client, runs[0]["id"])
    assert run["status"] == "succeeded", run


async def test_evaluation_that_cannot_finish_keeps_its_scores_and_says_what_to_change(
        settings: GatewaySettings, keys: Keys, db: sessionmaker[Session], workers: list[Worker],
        pg_url: str, vllm_tiny: VllmServer, tmp_path: Path) -> None:
    seed(db, vllm_tiny.served_name)
    worker(workers, pg_url, vllm_tiny, tmp_path, inference_timeout_s=0.001)
    async with gateway_client(settings, keys.admin) as client:
        started = await client.post("/v1/training-runs", json={
            "hyperparameters": {"max_steps": 1}})
        run = await wait_run(client, started.json()["id"])
    evaluation = run["evaluation"]
    assert run["status"] == "failed" and "evaluation stopped after 0/4 active" in run["error"]
    assert "MAFT_EVAL_CONCURRENCY (now 2)" in run["error"], run["error"]
    assert evaluation["partial"] is True and evaluation["questions"] == 4
    assert {evaluation["active"]["n"], evaluation["candidate"]["n"]} == {0}
    assert next(s for s in run["steps"] if s["name"] == "evaluate")["status"] == "failed"
    assert active_version(db) == 0


def test_a_stuck_step_makes_its_run_stale_even_while_the_run_beats(
        db: sessionmaker[Session]) -> None:
    now = utcnow()
    with db() as session, session.begin():
        run = crud.queue_run(session, options={}, trigger="api")
        crud.add_steps(session, run=run, names=["train:generator:0", "train:critic:0"])
        stuck, alive = run.steps[1], run.steps[2]
        stuck.status, stuck.heartbeat_at = "running", now - timedelta(seconds=60)
        alive.status, alive.heartbeat_at = "running", now
        run.heartbeat_at = now  # another worker keeps the run itself alive
        run_id = run.id
    with db() as session:
        assert [r.id for r in crud.stale_runs(session, before=now - timedelta(seconds=30))] == [
            run_id]
        assert crud.stale_runs(session, before=now - timedelta(seconds=90)) == []
    with db() as session, session.begin():
        crud.beat(session, run_id=run_id, step_name="train:generator:0")
    with db() as session:
        assert crud.stale_runs(session, before=now - timedelta(seconds=30)) == []
