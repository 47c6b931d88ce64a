"""GSM8K grade-school word problems from a JSONL file (question / answer with `#### N`)."""

from __future__ import annotations

from functools import cache
from typing import Any

from maft.parsing import canonical_number, to_fraction
from maft.tasks.base import Problem, check_split, dataset_path, read_jsonl, sample_problems
from maft.tasks.numeric import NumericTask


def reference_answer(answer_field: str) -> str | None:
    """The canonical number after `####` in a GSM8K answer field."""
    if "####" not in answer_field:
        return None
    value = to_fraction(answer_field.rsplit("####", 1)[1])
    return canonical_number(value) if value is not None else None


def problem_of(row: Any) -> Problem | None:
    """The problem of one GSM8K row; None when its answer is not a number."""
    answer = reference_answer(row["answer"])
    question = row["question"].strip()
    return Problem(question, answer) if answer is not None else None


@cache
def load_jsonl(path: str) -> tuple[Problem, ...]:
    """All usable problems of a GSM8K-style JSONL file (cached per path)."""
    return read_jsonl(path, "GSM8K", problem_of)


class GSM8KTask(NumericTask):
    """Word problems; the answer is a number."""

    name = "gsm8k"
    description = "GSM8K grade-school word problems (numeric answers); problems from a JSONL file."

    def __init__(self, path: str | None = None) -> None:
        self.path = path

    def options(self) -> dict[str, object]:
        """The dataset path."""
        return {"path": self.path}

    def problems(self, n: int, *, seed: int, split: str = "train") -> list[Problem]:
        """`n` problems of `split`, a seeded shuffle of the file's problems in that split."""
        check_split(split)
        path = dataset_path(self.name, self.path)
        return sample_problems(load_jsonl(path), n, seed=seed, split=split, source=path)
