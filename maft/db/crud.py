"""Data access: keyword-only functions over a Session. Callers own the transaction."""

from __future__ import annotations

import base64
import contextlib
import uuid
from datetime import datetime

from sqlalchemy import and_, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from maft import apikeys
from maft.db.models import (
    ActiveSociety,
    AdapterVersion,
    AgentResponse,
    ApiKey,
    Debate,
    Feedback,
    Society,
    utcnow,
)
from maft.debate import MAX_AGENTS, DebateConfig, DebateOutcome, Roster, Turn
from maft.exceptions import NotFoundError, SocietyError

# -- societies -------------------------------------------------------------------------------


def ensure_base_society(db: Session, *, base_model_name: str) -> None:
    """Record society v0 (the base model for every agent) and point at it if nothing is active."""
    if db.get(Society, 0) is None:
        try:
            with db.begin_nested():
                db.add(Society(version=0, kind="base", status="promoted",
                               base_model_name=base_model_name, agents=MAX_AGENTS))
        except IntegrityError:
            pass  # another process recorded it first
    if db.get(ActiveSociety, 1) is None:
        try:
            with db.begin_nested():
                db.add(ActiveSociety(id=1, version=0, reason="initial base society"))
        except IntegrityError:
            pass


def get_society(db: Session, *, version: int) -> Society:
    """A society with its adapters; NotFoundError if absent."""
    society = db.scalar(select(Society).where(Society.version == version)
                        .options(selectinload(Society.adapters)))
    if society is None:
        raise NotFoundError("society", f"v{version}")
    return society


def active_society(db: Session) -> Society:
    """The society the pointer names; SocietyError if none is recorded yet."""
    pointer = db.get(ActiveSociety, 1)
    if pointer is None:
        raise SocietyError("no active society recorded: run `maft db upgrade`")
    return get_society(db, version=pointer.version)


def roster_of(society: Society) -> Roster:
    """The debate roster of a society; SocietyError if its adapters are incomplete."""
    if society.kind == "base":
        return Roster.base(society.base_model_name, society.agents, society.version)
    by_role: dict[str, dict[int, str]] = {"generator": {}, "critic": {}}
    for adapter in society.adapters:
        by_role[adapter.role][adapter.agent_index] = adapter.lora_name
    names = {}
    for role, found in by_role.items():
        if sorted(found) != list(range(society.agents)):
            raise SocietyError(f"society v{society.version} lacks {role} adapters "
                               f"(has agents {sorted(found)} of {society.agents})")
        names[role] = tuple(found[i] for i in range(society.agents))
    return Roster(society.version, names["generator"], names["critic"], society.base_model_name)


def add_society(db: Session, *, version: int, base_model_name: str, agents: int,
                adapters: list[AdapterVersion], status: str = "candidate",
                parent_version: int | None = None,
                training_run_id: uuid.UUID | None = None) -> Society:
    """Record a society of adapters (not active until `activate_society`)."""
    society = Society(version=version, kind="adapters", status=status, agents=agents,
                      base_model_name=base_model_name, parent_version=parent_version,
                      training_run_id=training_run_id)
    db.add(society)
    db.flush()
    for adapter in adapters:
        adapter.society_version = version
        db.add(adapter)
    db.flush()
    return society


def activate_society(db: Session, *, version: int, reason: str) -> Society:
    """Point debates at society `version` (one UPDATE, in the caller's transaction)."""
    society = get_society(db, version=version)
    roster_of(society)  # refuse an incomplete society
    pointer = db.get(ActiveSociety, 1, with_for_update=True)
    if pointer is None:
        db.add(ActiveSociety(id=1, version=version, reason=reason))
    else:
        pointer.version, pointer.reason, pointer.updated_at = version, reason, utcnow()
    if society.status == "candidate":
        society.status = "promoted"
    return society


def next_society_version(db: Session) -> int:
    """A society version never used before."""
    return int(db.scalar(select(func.max(Society.version))) or 0) + 1


# -- debates ---------------------------------------------------------------------------------


def create_debate(db: Session, *, question: str, task: str, config: DebateConfig,
                  society_version: int, reference_answer: str | None = None,
                  source: str = "api", api_key_id: uuid.UUID | None = None) -> Debate:
    """Insert a debate in status 'running'."""
    s = config.sampling
    debate = Debate(question=question, task=task, agents=config.agents, rounds=config.rounds,
                    summarize=config.summarize, temperature=s.temperature, top_p=s.top_p,
                    max_tokens=s.max_tokens, society_version=society_version,
                    reference_answer=reference_answer, source=source, api_key_id=api_key_id)
    db.add(debate)
    db.flush()
    return debate


def add_response(db: Session, *, debate_id: uuid.UUID, turn: Turn) -> None:
    """Store one turn of a debate."""
    db.add(AgentResponse(
        debate_id=debate_id, round=turn.round, agent_index=turn.agent_index, role=turn.role,
        lora_name=turn.lora_name, messages=turn.messages, text=turn.text,
        parsed_answer=turn.answer, prompt_tokens=turn.prompt_tokens,
        completion_tokens=turn.completion_tokens, latency_ms=turn.latency_ms,
        finish_reason=turn.finish_reason))


def _close(db: Session, debate_id: uuid.UUID, latency_ms: float) -> Debate:
    debate = db.get(Debate, debate_id)
    if debate is None:
        raise NotFoundError("debate", debate_id)
    rows = db.scalars(select(AgentResponse).where(AgentResponse.debate_id == debate_id)).all()
    debate.prompt_tokens = sum(r.prompt_tokens for r in rows)
    debate.completion_tokens = sum(r.completion_tokens for r in rows)
    debate.latency_ms, debate.finished_at = latency_ms, utcnow()
    return debate


def finish_debate(db: Session, *, debate_id: uuid.UUID, outcome: DebateOutcome,
                  latency_ms: float) -> Debate:
    """Mark a debate completed with its vote."""
    debate = _close(db, debate_id, latency_ms)
    debate.status, debate.final_answer = "completed", outcome.final_answer
    debate.consensus = outcome.consensus
    return debate


def fail_debate(db: Session, *, debate_id: uuid.UUID, error: str, latency_ms: float) -> Debate:
    """Mark a debate failed; its partial transcript stays."""
    debate = _close(db, debate_id, latency_ms)
    debate.status, debate.error = "failed", error
    return debate


def get_debate(db: Session, *, debate_id: uuid.UUID) -> Debate:
    """A debate with its responses and feedback; NotFoundError if absent."""
    debate = db.scalar(select(Debate).where(Debate.id == debate_id).options(
        selectinload(Debate.responses), selectinload(Debate.feedback)))
    if debate is None:
        raise NotFoundError("debate", debate_id)
    return debate


def encode_cursor(debate: Debate) -> str:
    """Opaque cursor after `debate` in newest-first order."""
    raw = f"{debate.created_at.isoformat()}|{debate.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """Inverse of encode_cursor; ValueError if malformed."""
    try:
        stamp, key = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        return datetime.fromisoformat(stamp), uuid.UUID(key)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError("malformed cursor") from exc


def list_debates(db: Session, *, task: str | None = None, status: str | None = None,
                 since: datetime | None = None, until: datetime | None = None,
                 cursor: str | None = None, limit: int = 50) -> tuple[list[Debate], str | None]:
    """Debates newest first with filters; returns (page, next cursor or None)."""
    query = select(Debate).options(selectinload(Debate.feedback))
    if task:
        query = query.where(Debate.task == task)
    if status:
        query = query.where(Debate.status == status)
    if since:
        query = query.where(Debate.created_at >= since)
    if until:
        query = query.where(Debate.created_at < until)
    if cursor:
        stamp, key = decode_cursor(cursor)
        query = query.where(or_(Debate.created_at < stamp,
                                and_(Debate.created_at == stamp, Debate.id < key)))
    rows = list(db.scalars(query.order_by(Debate.created_at.desc(), Debate.id.desc())
                           .limit(limit + 1)))
    more = len(rows) > limit
    page = rows[:limit]
    return page, encode_cursor(page[-1]) if more and page else None


def add_feedback(db: Session, *, debate_id: uuid.UUID, correct_answer: str,
                 note: str | None = None, api_key_id: uuid.UUID | None = None) -> Feedback:
    """Store a ground-truth label for a debate; NotFoundError if the debate is absent."""
    if db.get(Debate, debate_id) is None:
        raise NotFoundError("debate", debate_id)
    feedback = Feedback(debate_id=debate_id, correct_answer=correct_answer, note=note,
                        api_key_id=api_key_id)
    db.add(feedback)
    db.flush()
    return feedback


# -- API keys --------------------------------------------------------------------------------


def create_api_key(db: Session, *, name: str, scopes: list[str]) -> tuple[ApiKey, str]:
    """A new key; the plaintext is returned once and never stored."""
    plaintext, prefix = apikeys.new_key()
    key = ApiKey(name=name, prefix=prefix, key_hash=apikeys.hash_key(plaintext),
                 scopes=apikeys.check_scopes(scopes))
    db.add(key)
    db.flush()
    return key, plaintext


def authenticate(db: Session, *, plaintext: str) -> ApiKey | None:
    """The live key matching `plaintext`, or None (unknown, malformed or revoked)."""
    prefix = apikeys.prefix_of(plaintext)
    if prefix is None:
        return None
    key = db.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if key is None or key.revoked_at is not None or not apikeys.matches(plaintext, key.key_hash):
        return None
    return key


def list_api_keys(db: Session) -> list[ApiKey]:
    """All keys, newest first."""
    return list(db.scalars(select(ApiKey).order_by(ApiKey.created_at.desc())))


def revoke_api_key(db: Session, *, key: str) -> ApiKey:
    """Revoke a key given by id or prefix; NotFoundError if no such key."""
    query = select(ApiKey).where(ApiKey.prefix == key)
    with contextlib.suppress(ValueError):
        query = select(ApiKey).where(or_(ApiKey.prefix == key, ApiKey.id == uuid.UUID(key)))
    found = db.scalar(query)
    if found is None:
        raise NotFoundError("api key", key)
    found.revoked_at = found.revoked_at or utcnow()
    return found


def list_societies(db: Session) -> list[Society]:
    """Every society with its adapters, newest first."""
    return list(db.scalars(select(Society).options(selectinload(Society.adapters))
                           .order_by(Society.version.desc())))


def list_adapters(db: Session) -> list[AdapterVersion]:
    """Every adapter version, newest society first."""
    return list(db.scalars(select(AdapterVersion).order_by(
        AdapterVersion.society_version.desc(), AdapterVersion.role, AdapterVersion.agent_index)))
