"""Promotion under load: requests in flight while the active society changes all succeed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from maft.cli.main import app
from maft.db import crud
from maft.db.models import AdapterVersion
from maft.db.session import make_session_factory
from maft.enums import Role, SocietyStatus
from tests.fixtures.db import reset
from tests.fixtures.gateway import LiveServer, make_keys, settings_for
from tests.fixtures.vllm import TEST_MAX_RANK, VllmServer, make_random_lora

pytestmark = pytest.mark.vllm
VERSION = 900
NAMES = [f"{p}-{i}@v{VERSION}" for p in ("gen", "crit") for i in range(2)]


@pytest.fixture(scope="module")
def society_adapters(vllm_tiny: VllmServer, tiny_model_dir: Path,
                     tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Four random adapters in the store, not yet loaded by vLLM."""
    root = tmp_path_factory.mktemp("hot-swap")
    for seed, name in enumerate(NAMES, start=50):
        if not vllm_tiny.store.exists(name):
            src = make_random_lora(tiny_model_dir, root / name, seed=seed)
            vllm_tiny.store.publish(src, name, base_model_path=str(tiny_model_dir),
                                    max_rank=TEST_MAX_RANK)
    return NAMES


def record_society(sessions: sessionmaker[Session], server: VllmServer,
                   status: SocietyStatus) -> None:
    """Society VERSION of the NAMES adapters (agents 0 and 1), with `status`."""
    with sessions() as db, db.begin():
        rows = [AdapterVersion(lora_name=n, role=Role.GENERATOR if n.startswith("gen")
                               else Role.CRITIC, agent_index=int(n[n.index("-") + 1]),
                               lora_path=str(server.store.path(n)),
                               base_model_name=server.served_name, rank=8) for n in NAMES]
        crud.add_society(db, version=VERSION, base_model_name=server.served_name, agents=2,
                         adapters=rows, status=status)


async def test_debates_in_flight_during_promotion_all_succeed(
        pg_url: str, pg_engine: Engine, vllm_tiny: VllmServer,
        society_adapters: list[str]) -> None:
    reset(pg_engine, vllm_tiny.served_name)
    sessions = make_session_factory(pg_engine)
    keys = make_keys(sessions)
    record_society(sessions, vllm_tiny, SocietyStatus.PROMOTED)
    # All 16 in flight at once (admission control would otherwise queue or shed some).
    settings = settings_for(pg_url, vllm_tiny.url, vllm_tiny.served_name,
                            adapter_store=vllm_tiny.store.root, default_max_tokens=32,
                            max_debates_in_flight=16, max_debates_queued=16)
    with LiveServer(settings) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=300, headers={
                "Authorization": f"Bearer {keys.admin}"}) as client:
            async def ask(i: int) -> httpx.Response:
                await asyncio.sleep(0.05 * i)
                return await client.post("/v1/debates", json={
                    "question": f"What is {i}+1?", "agents": 2, "rounds": 2})

            inflight = [asyncio.create_task(ask(i)) for i in range(16)]
            await asyncio.sleep(0.3)
            flip = await client.post(f"/v1/societies/{VERSION}/activate")
            results = await asyncio.gather(*inflight)
            after = await client.post("/v1/debates", json={"question": "What is 1+1?",
                                                            "agents": 2})
    assert flip.status_code == 200, flip.text
    assert [r.status_code for r in results] == [201] * 16, [r.text for r in results]
    versions = [r.json()["society_version"] for r in results]
    assert 0 in versions  # some were in flight before the flip
    for response in results:  # every debate is served by one society from start to end
        names = {x["lora_name"] for t in response.json()["transcript"] for x in t["responses"]}
        expected = {vllm_tiny.served_name} if response.json()["society_version"] == 0 else set(
            NAMES)
        assert names == expected
    assert after.json()["society_version"] == VERSION


async def test_a_rejected_society_needs_force_from_the_api_and_the_cli(
        pg_url: str, pg_engine: Engine, vllm_tiny: VllmServer, society_adapters: list[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    reset(pg_engine, vllm_tiny.served_name)
    sessions = make_session_factory(pg_engine)
    keys = make_keys(sessions)
    record_society(sessions, vllm_tiny, SocietyStatus.REJECTED)
    settings = settings_for(pg_url, vllm_tiny.url, vllm_tiny.served_name,
                            adapter_store=vllm_tiny.store.root)
    runner = CliRunner()
    with LiveServer(settings) as server:
        monkeypatch.setenv("MAFT_GATEWAY_URL", server.url)
        monkeypatch.setenv("MAFT_API_KEY", keys.admin)
        refused = runner.invoke(app, ["adapters", "activate", str(VERSION)])
        still = crud_active(sessions)
        forced = runner.invoke(app, ["adapters", "activate", str(VERSION), "--force"])
    assert refused.exit_code == 1 and "rejected by its evaluation gate" in refused.output
    assert "--force" in refused.output and still == 0
    assert forced.exit_code == 0, forced.output
    assert "forced" in forced.output and crud_active(sessions) == VERSION


def crud_active(sessions: sessionmaker[Session]) -> int:
    """The version the active-society pointer names."""
    with sessions() as db:
        return crud.active_society(db).version
