"""A debate belongs to the key that created it: query keys read and label only their own;
admins and trusted labellers (scope label) see all; only trusted labels train."""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session, sessionmaker

from maft.db import crud
from maft.db.models import Debate
from maft.debate import DebateConfig, DebateOutcome
from maft.voting import Vote
from services.gateway.settings import GatewaySettings
from tests.fixtures.gateway import gateway_client


def key(sessions: sessionmaker[Session], name: str, *scopes: str) -> tuple[uuid.UUID, str]:
    """(id, plaintext) of a new key."""
    with sessions() as db, db.begin():
        row, plaintext = crud.create_api_key(db, name=name, scopes=list(scopes))
        return row.id, plaintext


def debate(sessions: sessionmaker[Session], owner: uuid.UUID | None,
           reference: str | None = None) -> str:
    """A completed debate created by `owner` (None: before ownership, or auth off)."""
    with sessions() as db, db.begin():
        row = crud.create_debate(db, question=f"What is 2+{uuid.uuid4().int % 9}?",
                                 task="numeric", config=DebateConfig(), society_version=0,
                                 api_key_id=owner, reference_answer=reference)
        crud.finish_debate(db, debate_id=row.id, latency_ms=1.0, outcome=DebateOutcome(
            [], Vote(answer="5", votes=2, total=3, tally=[("5", 2)])))
        return str(row.id)


def bearer(plaintext: str) -> dict[str, str]:
    """Authorization header of a key."""
    return {"Authorization": f"Bearer {plaintext}"}


async def test_query_keys_see_and_label_only_their_own_debates(
        offline_settings: GatewaySettings, offline_db: sessionmaker[Session]) -> None:
    (a_id, a), (b_id, b) = key(offline_db, "team-a", "query"), key(offline_db, "team-b", "query")
    _, admin = key(offline_db, "ops", "admin")
    _, labeller = key(offline_db, "review", "label")
    mine, theirs, legacy = debate(offline_db, a_id), debate(offline_db, b_id), debate(
        offline_db, None)
    async with gateway_client(offline_settings) as client:
        own = await client.get(f"/v1/debates/{mine}", headers=bearer(a))
        other = await client.get(f"/v1/debates/{theirs}", headers=bearer(a))
        old = await client.get(f"/v1/debates/{legacy}", headers=bearer(a))
        listed = (await client.get("/v1/debates", headers=bearer(a))).json()["data"]
        poison = await client.post(f"/v1/debates/{theirs}/feedback", headers=bearer(a),
                                   json={"correct_answer": "666"})
        label = await client.post(f"/v1/debates/{mine}/feedback", headers=bearer(a),
                                  json={"correct_answer": "4"})
        everyone = {r["id"] for r in (await client.get("/v1/debates", headers=bearer(admin))
                                      ).json()["data"]}
        reviewed = await client.post(f"/v1/debates/{theirs}/feedback", headers=bearer(labeller),
                                     json={"correct_answer": "5"})
        admin_old = await client.get(f"/v1/debates/{legacy}", headers=bearer(admin))
        by_b = (await client.get(f"/v1/debates/{theirs}", headers=bearer(b))).json()
    assert own.status_code == 200
    assert other.status_code == 404 and old.status_code == 404  # not 403: existence hidden
    assert "not found" in other.json()["error"]["message"]
    assert [d["id"] for d in listed] == [mine]
    assert poison.status_code == 404 and label.status_code == 201
    assert label.json()["api_key_id"] == str(a_id)
    assert everyone == {mine, theirs, legacy} and admin_old.status_code == 200
    assert reviewed.status_code == 201 and by_b["correct_answer"] == "5"
    assert [f["correct_answer"] for f in by_b["feedback"]] == ["5"]


async def test_debates_created_through_the_api_belong_to_their_key(
        offline_settings: GatewaySettings, offline_db: sessionmaker[Session]) -> None:
    (a_id, a), (_, b) = key(offline_db, "team-a", "query"), key(offline_db, "team-b", "query")
    async with gateway_client(offline_settings) as client:
        failed = await client.post("/v1/debates", headers=bearer(a), json={"question": "2+2?"})
        debate_id = failed.json()["error"]["debate_id"]  # inference is down: stored failed
        by_a = await client.get(f"/v1/debates/{debate_id}", headers=bearer(a))
        by_b = await client.get(f"/v1/debates/{debate_id}", headers=bearer(b))
    with offline_db() as db:
        assert db.get(Debate, uuid.UUID(debate_id)).api_key_id == a_id  # type: ignore[union-attr]
    assert by_a.status_code == 200 and by_b.status_code == 404


def test_only_trusted_labellers_give_ground_truth(offline_db: sessionmaker[Session]) -> None:
    (team, _), (reviewer, _) = key(offline_db, "team", "query"), key(offline_db, "rev", "label")
    (admin, _) = key(offline_db, "ops", "admin")
    labelled = debate(offline_db, team)
    referenced = debate(offline_db, team, reference="9")
    trusted_reference = debate(offline_db, admin, reference="7")
    with offline_db() as db, db.begin():
        crud.add_feedback(db, debate_id=uuid.UUID(labelled), correct_answer="5",
                          api_key_id=reviewer)
        crud.add_feedback(db, debate_id=uuid.UUID(labelled), correct_answer="666",
                          api_key_id=team)  # later, but from an untrusted key
    with offline_db() as db:
        trusted = {r.id: r for r in crud.debate_records(db, trusted_labels_only=True)}
        anyone = {r.id: r for r in crud.debate_records(db)}
    assert trusted[labelled].feedback_answer == "5"
    assert trusted[referenced].reference_answer is None
    assert trusted[trusted_reference].reference_answer == "7"
    assert anyone[labelled].feedback_answer == "666" and anyone[referenced].reference_answer == "9"
