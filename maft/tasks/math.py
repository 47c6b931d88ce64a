"""Competition math (the MATH dataset's format): answers in \\boxed{}, compared symbolically.

Problems come from a JSONL file of rows {"problem", "solution"} (Hendrycks MATH), optionally with
"answer" (MATH-500) and "level" / "type" (or "subject") fields. The reference answer of a row is
its "answer" field, else the last \\boxed{} of its solution. Options: `path` (needed for
problems only: answering users' questions needs no file), `levels` (e.g. [1, 2, 3], the paper's
"MATH L1-3") and `subjects` (the MATH "type" values), both filters on the problems.

A response's answer is its last \\boxed{...}; unlike the numeric tasks there is no fall-back to
the last number, because a math answer is an expression ("2\\sqrt{3}", "(1, 2]") and a number
picked out of the reasoning would often be a wrong reading: an unboxed answer is unparseable,
hence wrong. Answers compare symbolically with math-verify in bounded time (maft.tasks.symbolic):
a failure or timeout means "not equivalent", never a crashed or stuck debate.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from maft.exceptions import InvalidTaskOptionError
from maft.parsing import last_boxed
from maft.tasks.base import (
    Problem,
    Task,
    check_split,
    dataset_path,
    read_jsonl,
    sample_problems,
)
from maft.tasks.symbolic import math_equivalent

SAMPLE_PATH = Path(__file__).parent / "data" / "math_sample.jsonl"
LEVELS = range(1, 6)

_FORMAT = (
    "Simplify your final answer and write it at the very end in the form \\boxed{{answer}}."
)


# -- dataset ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class MathRow:
    """One problem of a MATH file with its difficulty level and subject, when given."""

    problem: Problem
    level: int | None
    subject: str | None


def level_of(raw: object) -> int | None:
    """The level of a row: 3 or "Level 3" -> 3; anything else (e.g. "Level ?") -> None."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    text = str(raw).removeprefix("Level").strip() if isinstance(raw, str) else ""
    return int(text) if text.isdigit() else None


def reference_of(row: Any) -> str | None:
    """A row's reference answer: its "answer" field, else the last \\boxed{} of its solution."""
    answer = row.get("answer")
    if isinstance(answer, int | float) and not isinstance(answer, bool):
        answer = str(answer)
    if not isinstance(answer, str) or not answer.strip():
        answer = last_boxed(row["solution"])
    return answer.strip() if answer and answer.strip() else None


def row_of(row: Any) -> MathRow | None:
    """The MathRow of one JSONL row; None when it has no usable answer."""
    answer = reference_of(row)
    question = row["problem"].strip()
    subject = row.get("type", row.get("subject"))
    if answer is None or not question:
        return None
    return MathRow(Problem(question, answer), level_of(row.get("level")),
                   subject if isinstance(subject, str) else None)


@cache
def load_jsonl(path: str) -> tuple[MathRow, ...]:
    """All usable rows of a MATH-style JSONL file (cached per path)."""
    return read_jsonl(path, "MATH", row_of)


# -- the task ---------------------------------------------------------------------------------


def _checked_levels(levels: object) -> tuple[int, ...] | None:
    """The `levels` option: None (all) or integers from 1 to 5."""
    if levels is None:
        return None
    if not isinstance(levels, list | tuple) or not levels or not all(
            isinstance(x, int) and not isinstance(x, bool) and x in LEVELS for x in levels):
        raise InvalidTaskOptionError(f"math levels must be a list of 1..5, not {levels!r}")
    return tuple(sorted(set(levels)))


def _checked_subjects(subjects: object) -> tuple[str, ...] | None:
    """The `subjects` option: None (all) or subject names (the MATH "type" field)."""
    if subjects is None:
        return None
    if not isinstance(subjects, list | tuple) or not subjects or not all(
            isinstance(x, str) for x in subjects):
        raise InvalidTaskOptionError(f"math subjects must be a list of names, not {subjects!r}")
    return tuple(subjects)


class MathTask(Task):
    """Competition math; the answer is a LaTeX expression compared symbolically."""

    name = "math"
    description = ("Competition math (MATH format; answers in \\boxed{}, compared with "
                   "math-verify); problems from a JSONL file, filtered by level and subject.")

    generation_template = "{question}\n\nSolve the problem, explaining each step. " + _FORMAT
    critic_template = (
        "Here are the solutions of other agents to the problem:\n\n{others}\n\n"
        "Take their reasoning as additional advice and give an updated solution. "
        "Check your own solution and the other agents' solutions step by step. " + _FORMAT
    )
    critic_summary_template = (
        "Here is a summary of the other agents' solutions:\n\n{summary}\n\n"
        "Take this summary as additional advice and give an updated solution. "
        "Check your solution step by step. " + _FORMAT
    )
    summarizer_template = (
        "Several agents solved this problem:\n{question}\n\nTheir solutions:\n\n{others}\n\n"
        "Summarise each agent's reasoning and final answer in a few sentences."
    )

    def __init__(self, path: str | None = None, levels: object = None,
                 subjects: object = None) -> None:
        self.path = path
        self.levels = _checked_levels(levels)
        self.subjects = _checked_subjects(subjects)

    def options(self) -> dict[str, object]:
        """The dataset path and the level and subject filters (None: all)."""
        return {"path": self.path,
                "levels": list(self.levels) if self.levels else None,
                "subjects": list(self.subjects) if self.subjects else None}

    def parse(self, text: str) -> str | None:
        """The last \\boxed{} of a response (no fall-back: an unboxed answer is unparseable)."""
        boxed = last_boxed(text)
        return boxed or None

    def equivalent(self, a: str, b: str) -> bool:
        """Equal text, else symbolic equivalence by math-verify, in bounded time."""
        return math_equivalent(a, b)

    def normalize_reference(self, raw: str) -> str:
        """A reference given as `x`, `$x$` or `\\boxed{x}` -> `x`; empty is invalid."""
        text = str(raw).strip()
        boxed = last_boxed(text)
        if boxed is None and ("\\boxed" in text or "\\fbox" in text):
            raise InvalidTaskOptionError(f"answer {raw!r} has an unbalanced \\boxed{{}}")
        if boxed is None and len(text) > 1 and text[0] == text[-1] == "$":
            text = text.strip("$").strip()
        answer = boxed if boxed is not None else text
        if not answer:
            raise InvalidTaskOptionError(f"answer {raw!r} is empty (task {self.name})")
        return answer

    def selected(self, row: MathRow) -> bool:
        """Whether a row passes the level and subject filters."""
        return ((self.levels is None or row.level in self.levels)
                and (self.subjects is None or row.subject in self.subjects))

    def problems(self, n: int, *, seed: int, split: str = "train") -> list[Problem]:
        """`n` problems of `split` among the file's rows that pass the filters, seeded."""
        check_split(split)
        path = dataset_path(self.name, self.path)
        pool = [row.problem for row in load_jsonl(path) if self.selected(row)]
        return sample_problems(pool, n, seed=seed, split=split, source=self.source(path))

    def source(self, path: str) -> str:
        """The file and its filters, for error messages."""
        filters = [f"levels {list(self.levels)}" if self.levels else "",
                   f"subjects {list(self.subjects)}" if self.subjects else ""]
        named = ", ".join(f for f in filters if f)
        return f"{path} ({named})" if named else path
