"""GSM8K grade-school word problems from a JSONL file (question / answer with `#### N`)."""

from __future__ import annotations

import json
import random
from functools import cache
from pathlib import Path

from maft.exceptions import InvalidTaskOptionError
from maft.parsing import canonical_number, to_fraction
from maft.tasks.base import Problem, check_split, split_of
from maft.tasks.numeric import NumericTask


def reference_answer(answer_field: str) -> str | None:
    """The canonical number after `####` in a GSM8K answer field."""
    if "####" not in answer_field:
        return None
    value = to_fraction(answer_field.rsplit("####", 1)[1])
    return canonical_number(value) if value is not None else None


@cache
def load_jsonl(path: str) -> tuple[Problem, ...]:
    """All usable problems of a GSM8K-style JSONL file (cached per path)."""
    file = Path(path)
    if not file.is_file():
        raise InvalidTaskOptionError(f"GSM8K file {path} does not exist")
    problems = []
    with file.open("rb") as handle:  # json.loads decodes UTF-8 itself, errors included
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                answer = reference_answer(row["answer"])
                question = row["question"].strip()
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise InvalidTaskOptionError(f"{path}:{number}: not a GSM8K row ({exc})") from exc
            if answer is not None:
                problems.append(Problem(question, answer))
    return tuple(problems)


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
        if not self.path:
            raise InvalidTaskOptionError("task gsm8k needs a dataset path (option 'path')")
        pool = [p for p in load_jsonl(self.path) if split == "all" or split_of(p.question) == split]
        if len(pool) < n:
            raise InvalidTaskOptionError(f"{self.path} has only {len(pool)} {split} problems")
        return random.Random(seed).sample(pool, n)
