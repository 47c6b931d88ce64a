"""Wire schemas of training runs."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from maft.enums import ENDED_RUN, StepStatus


class StepOut(BaseModel):
    """One step of a run with its progress."""

    model_config = ConfigDict(from_attributes=True)

    name: str
    status: str
    attempts: int
    progress: float
    eta_s: float | None
    detail: dict[str, Any]
    started_at: datetime | None
    finished_at: datetime | None


class TrainingRunOut(BaseModel):
    """A training run: options, per-step progress, dataset statistics, evaluation, decision."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    status: str
    trigger: str
    options: dict[str, Any]
    base_society_version: int | None
    candidate_society_version: int | None
    progress: float
    eta_s: float | None
    steps: list[StepOut]
    dataset_stats: dict[str, Any]
    evaluation: dict[str, Any]
    decision: str | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None

    @classmethod
    def from_row(cls, run: Any) -> TrainingRunOut:
        """From an ORM TrainingRun; overall progress is the mean of its steps'."""
        steps = [StepOut.model_validate(s) for s in run.steps]
        done = run.status in ENDED_RUN
        progress = 1.0 if done else (sum(s.progress for s in steps) / len(steps) if steps else 0)
        etas = [s.eta_s for s in steps if s.status == StepStatus.RUNNING and s.eta_s is not None]
        data = {k: getattr(run, k) for k in cls.model_fields
                if k not in ("steps", "progress", "eta_s")}
        return cls(**data, steps=steps, progress=progress,
                   eta_s=0.0 if done else (max(etas) if etas else None))


class TrainingRunPage(BaseModel):
    """Runs, newest first."""

    data: list[TrainingRunOut]
