"""What every task provides: prompt templates, answer parsing and equivalence, problems."""

from __future__ import annotations

import hashlib
import json
import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from maft.exceptions import InvalidTaskOptionError

Message = dict[str, str]

TEST_FRACTION = 0.2

T = TypeVar("T")


@dataclass(frozen=True)
class Problem:
    """A question with its known (canonical) answer."""

    question: str
    answer: str


def split_of(question: str) -> str:
    """Stable train/test assignment of a question by hash: the two splits never overlap."""
    digest = hashlib.sha256(question.strip().encode()).digest()
    return "test" if int.from_bytes(digest[:4], "big") / 2**32 < TEST_FRACTION else "train"


class Task(ABC):
    """A kind of question: owns its prompts, its answer parser and its answer equivalence."""

    name: ClassVar[str]
    description: ClassVar[str]

    generation_template: ClassVar[str]
    critic_template: ClassVar[str]
    critic_summary_template: ClassVar[str]
    summarizer_template: ClassVar[str]
    other_answer_template: ClassVar[str] = "Agent {index}'s solution:\n```\n{text}\n```"
    hint_template: ClassVar[str] = "\n\nHint: the correct answer is {answer}."

    def generation_messages(self, question: str) -> list[Message]:
        """First-round prompt: the question, a request for reasoning, the answer format."""
        return [{"role": "user", "content": self.generation_template.format(question=question)}]

    def hinted_generation_messages(self, question: str, answer: str) -> list[Message]:
        """STaR rationalisation prompt: the generation prompt plus the true answer as a hint."""
        content = self.generation_template.format(question=question)
        return [{"role": "user", "content": content + self.hint_template.format(answer=answer)}]

    def format_others(self, others: Sequence[str]) -> str:
        """The other agents' responses, one block each."""
        blocks = [self.other_answer_template.format(index=i + 1, text=t.strip())
                  for i, t in enumerate(others)]
        return "\n\n".join(blocks)

    def critic_message(self, others: Sequence[str]) -> Message:
        """Critic user turn carrying the other agents' previous-round responses."""
        content = self.critic_template.format(others=self.format_others(others))
        return {"role": "user", "content": content}

    def critic_summary_message(self, summary: str) -> Message:
        """Critic user turn carrying a summary of the other agents' responses."""
        return {"role": "user", "content": self.critic_summary_template.format(summary=summary)}

    def summarizer_messages(self, question: str, others: Sequence[str]) -> list[Message]:
        """Prompt for the summarizer (base model) over the other agents' responses."""
        content = self.summarizer_template.format(question=question,
                                                  others=self.format_others(others))
        return [{"role": "user", "content": content}]

    @abstractmethod
    def parse(self, text: str) -> str | None:
        """Canonical answer of a response, or None if it has none."""

    @abstractmethod
    def equivalent(self, a: str, b: str) -> bool:
        """Whether two canonical answers are the same answer."""

    @abstractmethod
    def normalize_reference(self, raw: str) -> str:
        """Canonical form of a user-given reference answer; InvalidTaskOptionError if invalid."""

    def is_correct(self, text_or_answer: str | None, reference: str) -> bool:
        """Whether a parsed answer matches the reference; None is always wrong."""
        return text_or_answer is not None and self.equivalent(text_or_answer, reference)

    def problems(self, n: int, *, seed: int, split: str = "train") -> list[Problem]:
        """`n` distinct problems with known answers from `split` ('train', 'test' or 'all')."""
        raise InvalidTaskOptionError(f"task {self.name!r} has no problem source")

    def options(self) -> dict[str, object]:
        """The options this task instance was built with (recorded with experiments)."""
        return {}


def check_split(split: str) -> None:
    """Reject an unknown split name."""
    if split not in ("train", "test", "all"):
        raise InvalidTaskOptionError(f"split must be 'train', 'test' or 'all', not {split!r}")


def dataset_path(task: str, path: str | None) -> str:
    """The dataset path of a file-backed task; InvalidTaskOptionError when it has none."""
    if not path:
        raise InvalidTaskOptionError(f"task {task} needs a dataset path (option 'path')")
    return path


def read_jsonl(path: str, kind: str, convert: Callable[[Any], T | None]) -> tuple[T, ...]:
    """`convert` of every row of a JSONL file, rows it maps to None left out.

    A missing file or a row `convert` rejects (ValueError, KeyError, TypeError,
    AttributeError) is an InvalidTaskOptionError naming `kind`, the file and the line.
    """
    file = Path(path)
    if not file.is_file():
        raise InvalidTaskOptionError(f"{kind} file {path} does not exist")
    items = []
    with file.open("rb") as handle:  # json.loads decodes UTF-8 itself, errors included
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                item = convert(json.loads(line))
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise InvalidTaskOptionError(f"{path}:{number}: not a {kind} row ({exc})") from exc
            if item is not None:
                items.append(item)
    return tuple(items)


def sample_problems(pool: Iterable[Problem], n: int, *, seed: int, split: str,
                    source: str) -> list[Problem]:
    """`n` problems with distinct questions from `pool`'s `split`, a seeded sample."""
    check_split(split)
    unique: dict[str, Problem] = {}
    for p in pool:  # the first of repeated questions wins, so the pool order is the file's
        if split == "all" or split_of(p.question) == split:
            unique.setdefault(p.question, p)
    if len(unique) < n:
        raise InvalidTaskOptionError(f"{source} has only {len(unique)} {split} problems")
    return random.Random(seed).sample(list(unique.values()), n)
