"""Task registry: a name -> a Task class; options configure an instance."""

from __future__ import annotations

from maft.exceptions import InvalidTaskOptionError, UnknownTaskError
from maft.tasks.arithmetic import ArithmeticSpec, ArithmeticTask
from maft.tasks.base import Message, Problem, Task, split_of
from maft.tasks.gsm8k import GSM8KTask
from maft.tasks.math import MathTask
from maft.tasks.numeric import NumericTask

REGISTRY: dict[str, type[Task]] = {
    NumericTask.name: NumericTask,
    ArithmeticTask.name: ArithmeticTask,
    GSM8KTask.name: GSM8KTask,
    MathTask.name: MathTask,
}


def task_names() -> list[str]:
    """Names of all registered tasks."""
    return sorted(REGISTRY)


def get_task(name: str, **options: object) -> Task:
    """A task instance by name; UnknownTaskError for a name not in the registry."""
    try:
        cls = REGISTRY[name]
    except KeyError:
        raise UnknownTaskError(name, list(REGISTRY)) from None
    try:
        return cls(**options)
    except TypeError as exc:
        raise InvalidTaskOptionError(f"bad option for task {name!r}: {exc}") from exc


__all__ = [
    "REGISTRY",
    "ArithmeticSpec",
    "ArithmeticTask",
    "GSM8KTask",
    "MathTask",
    "Message",
    "NumericTask",
    "Problem",
    "Task",
    "get_task",
    "split_of",
    "task_names",
]
