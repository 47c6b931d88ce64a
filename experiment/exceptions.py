"""Errors of the experiment harness."""

from maft.exceptions import MaftError


class ConfigMismatchError(MaftError, ValueError):
    """The output folder holds a run with another config: resume needs the same command."""
