"""Curation of real debates: the tiny model on vLLM debates through the product's debate
service into Postgres, and the trainer's curation reads them back with the labelling rules.

The tiny model is random, so its answers are forced into the task's format with vLLM's
structured outputs (a regex). A few free letters before the box make each response's context
different, so the random weights' preference between 0 and 1 changes from response to response
(without them one digit can win every time). Two agents answering 0 or 1 then split 1-1 often:
those debates have no strict majority. A regex that puts letters after the box makes
every response run into max_tokens: parseable, but cut off.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from maft.curation import CurationConfig
from maft.db import crud
from maft.db.session import make_session_factory
from maft.debate import DebateConfig
from maft.inference_client import InferenceClient, Sampling
from maft.tasks import get_task
from services.gateway.debates import DebateRequest, DebateService, Store
from services.trainer.pipeline.curate import curate_all
from tests.fixtures.db import reset
from tests.fixtures.gateway import settings_for
from tests.fixtures.vllm import VllmServer

pytestmark = pytest.mark.vllm
TASK = get_task("arithmetic", terms=6, pattern="*****", low=0, high=2)
COMPLETE = {"structured_outputs": {"regex": r"[a-z]{3} \\boxed\{[01]\}"}}
CUT = {"structured_outputs": {"regex": r"\\boxed\{[01]\} [a-z]{40}"}}


@pytest.fixture
def sessions(pg_engine: Engine, vllm_tiny: VllmServer) -> sessionmaker[Session]:
    """Empty database whose society v0 is the tiny base model."""
    reset(pg_engine, vllm_tiny.served_name)
    return make_session_factory(pg_engine)


async def debate_all(sessions: sessionmaker[Session], server: VllmServer, pg_url: str,
                     extra: dict[str, Any], max_tokens: int, n: int = 12) -> None:
    """`n` two-agent, two-round debates through the product's DebateService (stored)."""
    client = InferenceClient(server.url, timeout=120)
    service = DebateService(store=Store(sessions), backend=client,
                            settings=settings_for(pg_url, server.url, server.served_name,
                                                 adapter_store=server.store.root))
    config = DebateConfig(agents=2, rounds=2, sampling=Sampling(
        temperature=2.0, top_p=1.0, max_tokens=max_tokens, extra=extra))
    try:
        for problem in TASK.problems(n, seed=3, split="train"):
            request = DebateRequest(problem.question, TASK, config, None)
            debate_id, roster = await service.start(request)
            await service.run(request, debate_id, roster)
    finally:
        await client.aclose()


def curated(sessions: sessionmaker[Session], **rules: Any) -> dict[str, Any]:
    """The trainer's curation of every stored debate, and its statistics."""
    with sessions() as db:
        records = crud.debate_records(db)
    return curate_all(records, agents=2, config=CurationConfig(w=0.5, **rules))[1]


def test_only_strict_majorities_label_real_debates(
        sessions: sessionmaker[Session], vllm_tiny: VllmServer, pg_url: str) -> None:
    asyncio.run(debate_all(sessions, vllm_tiny, pg_url, COMPLETE, max_tokens=24, n=30))
    # About a quarter split (measured 2/12 and 4/12): none in 30 has a chance of about 2e-4.
    with sessions() as db:
        records = crud.debate_records(db)
    splits = sum(r.consensus is not None and r.consensus <= 0.5 for r in records)
    stats = curated(sessions)
    task_stats = stats["tasks"]["arithmetic"]
    assert 0 < splits < len(records), [r.consensus for r in records]  # both kinds happened
    assert task_stats["dropped"]["no_majority"] == splits
    assert task_stats["debates_used"] == len(records) - splits
    old = curated(sessions, majority="plurality")["tasks"]["arithmetic"]
    assert old["debates_used"] == len(records) and old["dropped"]["no_majority"] == 0
    sizes = [a["size"] for a in stats["agents"].values()]
    assert sum(sizes) > 0 and all(a["truncated"] == 0 for a in stats["agents"].values())


def test_responses_cut_at_max_tokens_are_never_targets(
        sessions: sessionmaker[Session], vllm_tiny: VllmServer, pg_url: str) -> None:
    asyncio.run(debate_all(sessions, vllm_tiny, pg_url, CUT, max_tokens=8))
    with sessions() as db:
        finishes = {r.finish_reason for d in crud.debate_records(db) for r in d.turns}
    assert finishes == {"length"}
    agents = curated(sessions, majority="plurality")["agents"]
    assert all(a["size"] == 0 for a in agents.values())
    assert sum(a["truncated"] for a in agents.values()) > 0
    before = curated(sessions, majority="plurality", drop_truncated=False)["agents"]
    assert sum(a["size"] for a in before.values()) > 0
