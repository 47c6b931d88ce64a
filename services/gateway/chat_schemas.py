"""Wire schemas of the OpenAI-compatible endpoints (/v1/chat/completions, /v1/models)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.gateway.schemas import MAX_QUESTION_CHARS, Text, no_nul

# Earlier messages are accepted (OpenAI clients send history) but only the last user message
# is debated; bounds keep a request's size sane.
MAX_MESSAGES, MAX_MESSAGE_CHARS = 64, 16_000


class ChatMessage(BaseModel):
    """A chat message; content may be a string or OpenAI content parts."""

    model_config = ConfigDict(extra="allow")

    role: Text = Field(max_length=32)
    content: str | list[dict[str, Any]] | None = None

    @model_validator(mode="after")
    def _bounded_text(self) -> ChatMessage:
        text = self.text()
        no_nul(text)
        if len(text) > MAX_MESSAGE_CHARS:
            raise ValueError(f"a message's text must be at most {MAX_MESSAGE_CHARS} characters")
        return self

    def text(self) -> str:
        """The text of the message (text parts joined)."""
        if isinstance(self.content, str):
            return self.content
        parts = self.content or []
        return "".join(str(p.get("text", "")) for p in parts if p.get("type") == "text")


class ChatRequest(BaseModel):
    """POST /v1/chat/completions. OpenAI fields we do not use are accepted and ignored."""

    model_config = ConfigDict(extra="ignore")

    model: Text = Field(default="maft-debate", max_length=200)
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(default=None, ge=1, le=4096)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=4096)
    stream: bool = False
    n: int = Field(default=1, ge=1, le=1, description="Only one choice per debate.")

    @model_validator(mode="after")
    def _has_question(self) -> ChatRequest:
        if not self.question():
            raise ValueError("messages must contain a user message with text")
        if len(self.question()) > MAX_QUESTION_CHARS:
            raise ValueError(f"the last user message (the question) must be at most "
                             f"{MAX_QUESTION_CHARS} characters")
        return self

    def question(self) -> str:
        """The last user message's text."""
        users = [m for m in self.messages if m.role == "user"]
        return users[-1].text().strip() if users else ""


class ChatChoice(BaseModel):
    """One choice of a non-streamed answer."""

    index: int = 0
    message: dict[str, Any]
    finish_reason: Literal["stop", "length"] = "stop"


class ChatResponse(BaseModel):
    """A chat.completion with the debate in the extra `maft` field."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: dict[str, int]
    maft: dict[str, Any]


class ModelCard(BaseModel):
    """A debate preset as an OpenAI model."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "maft"
    maft: dict[str, Any]


class ModelList(BaseModel):
    """GET /v1/models."""

    object: Literal["list"] = "list"
    data: list[ModelCard]
