"""Errors of the trainer's pipeline steps (a failed step fails its run with the message)."""

from maft.exceptions import MaftError


class EvaluationError(MaftError):
    """The evaluation gate could not score the societies; the message says what to change."""
