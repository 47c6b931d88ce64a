"""Errors of the trainer's pipeline steps (a failed step fails its run with the message)."""

from maft.exceptions import MaftError


class EvaluationError(MaftError):
    """The evaluation gate could not score the societies; the message says what to change."""


class RunNotPlannedError(MaftError):
    """A step of a run whose curate step never planned it (no candidate society)."""
