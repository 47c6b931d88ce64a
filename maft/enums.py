"""The product's vocabulary: roles, statuses, decisions and label sources.

String enums: members compare equal to (and serialise as) their values, which are what the
database columns, the API and the Celery contract carry.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    """What a model call plays in a debate."""

    GENERATOR = "generator"
    CRITIC = "critic"
    SUMMARIZER = "summarizer"


AGENT_ROLES = (Role.GENERATOR, Role.CRITIC)  # the roles that have adapters


class DebateStatus(StrEnum):
    """Where a stored debate is."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


class RunStatus(StrEnum):
    """Where a training run is."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"


LIVE_RUN = (RunStatus.QUEUED, RunStatus.RUNNING)  # hold the one-live-run lock
ENDED_RUN = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.SKIPPED)


class StepStatus(StrEnum):
    """Where one step of a training run is."""

    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    SKIPPED = "skipped"
    FAILED = "failed"


FINISHED_STEP = (StepStatus.DONE, StepStatus.SKIPPED)


class SocietyKind(StrEnum):
    """A society of the base model for every agent (v0), or of 2N adapters."""

    BASE = "base"
    ADAPTERS = "adapters"


class SocietyStatus(StrEnum):
    """Whether a society passed its evaluation gate."""

    CANDIDATE = "candidate"
    PROMOTED = "promoted"
    REJECTED = "rejected"


class Decision(StrEnum):
    """What a training run decided about its candidate society."""

    PROMOTE = "promote"
    REJECT = "reject"
    SKIPPED = "skipped"


class LabelSource(StrEnum):
    """Where a training label came from."""

    FEEDBACK = "feedback"
    REFERENCE = "reference"
    VOTE = "vote"


class ExampleKind(StrEnum):
    """A training example: generator answer, corrected (C-) or kept-correct (C+) critique."""

    GENERATOR = "G"
    CORRECTED = "C-"
    KEPT_CORRECT = "C+"
