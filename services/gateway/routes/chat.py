"""OpenAI-compatible endpoints: a chat completion is a debate; `model` names a preset."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from maft.db.models import Debate
from maft.debate import DebateListener, Turn
from maft.enums import Role
from maft.exceptions import DebateFailedError, NotFoundError
from maft.voting import Vote
from services.gateway import views
from services.gateway.admission import Release, cancel_on_disconnect, while_connected
from services.gateway.chat_schemas import (
    ChatChoice,
    ChatRequest,
    ChatResponse,
    ModelCard,
    ModelList,
)
from services.gateway.debates import DebateRequest, build_request
from services.gateway.deps import DebateServiceDep, LimiterDep, QueryPrincipal, SettingsDep
from services.gateway.errors import inference_status
from services.gateway.operations import spawn
from services.gateway.presets import presets
from services.gateway.schemas import ErrorOut

router = APIRouter(prefix="/v1", tags=["openai-compatible"])
STARTED = int(time.time())
NO_ANSWER = "The agents did not reach a parseable answer."


@router.get("/models", response_model=ModelList)
def list_models(_: QueryPrincipal, settings: SettingsDep) -> ModelList:
    """The debate presets, as OpenAI models."""
    cards = [ModelCard(id=p.id, created=STARTED, maft={
        "description": p.description, "agents": p.agents, "rounds": p.rounds,
        "summarize": p.summarize, "task": p.task}) for p in presets(settings).values()]
    return ModelList(data=cards)


def _request(body: ChatRequest, settings: SettingsDep, principal: QueryPrincipal
             ) -> DebateRequest:
    preset = presets(settings).get(body.model)
    if preset is None:
        raise NotFoundError("model", f"{body.model!r} (GET /v1/models lists the presets)")
    return build_request(
        settings, question=body.question(), task=preset.task, agents=preset.agents,
        rounds=preset.rounds, summarize=preset.summarize, temperature=body.temperature,
        top_p=body.top_p, max_tokens=body.max_completion_tokens or body.max_tokens,
        source="chat", api_key_id=principal.key_id)


def answer_text(debate: Debate) -> str:
    """The last-round response of the lowest-index agent that holds the majority answer."""
    if debate.final_answer is None:
        return NO_ANSWER
    task = views.task_of(debate.task)
    last = [r for r in debate.responses if r.round == debate.rounds and r.role != Role.SUMMARIZER]
    for response in sorted(last, key=lambda r: r.agent_index):
        if response.parsed_answer and task.equivalent(response.parsed_answer,
                                                      debate.final_answer):
            return response.text
    return NO_ANSWER


def _maft(debate: Debate) -> dict[str, Any]:
    return {"debate_id": str(debate.id), "status": debate.status,
            "final_answer": debate.final_answer, "consensus": debate.consensus,
            "society_version": debate.society_version,
            "rounds": [{"round": r.round, "majority_answer": r.majority_answer,
                        "consensus": r.consensus,
                        "answers": [{"agent_index": x.agent_index, "lora_name": x.lora_name,
                                     "answer": x.parsed_answer}
                                    for x in r.responses if x.role != Role.SUMMARIZER]}
                       for r in views.rounds(debate)]}


def _usage(debate: Debate) -> dict[str, int]:
    return {"prompt_tokens": debate.prompt_tokens, "completion_tokens": debate.completion_tokens,
            "total_tokens": debate.prompt_tokens + debate.completion_tokens}


@router.post("/chat/completions", response_model=ChatResponse,
             responses={c: {"model": ErrorOut} for c in (401, 404, 422, 429, 503, 504)})
async def chat_completions(body: ChatRequest, request: Request, principal: QueryPrincipal,
                           settings: SettingsDep, service: DebateServiceDep,
                           limiter: LimiterDep) -> Any:
    """The last user message is the question; the debate's answer is the assistant message.

    Admission, rate limits and disconnects as for POST /v1/debates; a streamed debate is
    cancelled (and stored failed) when its client goes away.
    """
    if principal.key_id is not None:
        await limiter.hit("debates", str(principal.key_id),
                          settings.debate_rate_limit_per_minute)
    debate_request = _request(body, settings, principal)
    if body.stream:
        debate_id, roster, release = await while_connected(request.receive,
                                                           service.open(debate_request))
        stream = _Stream(body.model, debate_id)
        job = spawn(request.app.state.jobs,
                    stream.drive(service, debate_request, roster, release))
        cancel_on_disconnect(request.receive, job)
        return StreamingResponse(stream.events(job), media_type="text/event-stream")
    debate = await while_connected(request.receive, service.serve(debate_request))
    return ChatResponse(id=f"chatcmpl-{debate.id}", created=int(debate.created_at.timestamp()),
                        model=body.model, usage=_usage(debate), maft=_maft(debate),
                        choices=[ChatChoice(message={"role": "assistant",
                                                     "content": answer_text(debate)})])


class _Stream(DebateListener):
    """Turns debate progress into chat.completion.chunk events, one per finished round."""

    def __init__(self, model: str, debate_id: uuid.UUID) -> None:
        self.model, self.debate_id = model, debate_id
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    def chunk(self, delta: dict[str, Any], finish: str | None = None, **extra: Any
              ) -> dict[str, Any]:
        """One chat.completion.chunk."""
        return {"id": f"chatcmpl-{self.debate_id}", "object": "chat.completion.chunk",
                "created": int(time.time()), "model": self.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}

    async def round_done(self, round_no: int, turns: list[Turn], vote: Vote) -> None:
        """Emit the round: answers as reasoning text, structured data in `maft`."""
        answers = ", ".join(f"agent {t.agent_index}: {t.answer}" for t in turns)
        text = (f"Round {round_no}: {answers}. Majority: {vote.answer} "
                f"({vote.votes}/{vote.total}).\n")
        info = {"debate_id": str(self.debate_id), "round": round_no,
                "majority_answer": vote.answer, "consensus": vote.consensus,
                "answers": [{"agent_index": t.agent_index, "lora_name": t.lora_name,
                             "answer": t.answer} for t in turns]}
        await self.queue.put(self.chunk({"reasoning_content": text}, maft=info))

    async def drive(self, service: DebateServiceDep, request: DebateRequest, roster: Any,
                    release: Release) -> None:
        """Run the debate (holding its slot) and close the stream."""
        try:
            debate = await service.run(request, self.debate_id, roster, listener=self)
        except DebateFailedError as exc:
            status, kind = inference_status(exc.cause)
            await self.queue.put({"error": {"message": f"debate failed: {exc}", "type": kind,
                                            "code": status, "debate_id": str(self.debate_id)}})
        else:
            await self.queue.put(self.chunk({"content": answer_text(debate)}))
            await self.queue.put(self.chunk({}, "stop", usage=_usage(debate), maft=_maft(debate)))
        finally:
            release()
            await self.queue.put(None)

    async def events(self, job: asyncio.Task[None]) -> AsyncIterator[str]:
        """The SSE body; if the client goes away first, the debate is cancelled."""
        try:
            yield f"data: {json.dumps(self.chunk({'role': 'assistant', 'content': ''}))}\n\n"
            while (event := await self.queue.get()) is not None:
                yield f"data: {json.dumps(event)}\n\n"
            yield "data: [DONE]\n\n"
        finally:
            job.cancel()  # no-op once the debate has ended
