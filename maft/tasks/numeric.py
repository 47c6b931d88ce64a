"""Questions whose answer is a number."""

from __future__ import annotations

from maft.exceptions import InvalidTaskOptionError
from maft.parsing import canonical_number, numbers_equal, parse_numeric_answer, to_fraction
from maft.tasks.base import Task

_FORMAT = (
    "End your response with the final answer as a single number in the form \\boxed{{answer}}."
)


class NumericTask(Task):
    """Any question whose answer is a number; answers compare numerically."""

    name = "numeric"
    description = "Any question whose answer is a number (answers compare numerically)."

    generation_template = "{question}\n\nExplain your reasoning step by step. " + _FORMAT
    critic_template = (
        "These are the solutions to the problem from other agents:\n\n{others}\n\n"
        "Using the reasoning from other agents as additional advice, give an updated answer. "
        "Examine your solution and the other agents' solutions step by step. " + _FORMAT
    )
    critic_summary_template = (
        "Here is a summary of the solutions from other agents:\n\n{summary}\n\n"
        "Using this summary as additional advice, give an updated answer. "
        "Examine your solution step by step. " + _FORMAT
    )
    summarizer_template = (
        "Here are solutions from several agents to the question:\n{question}\n\n{others}\n\n"
        "Summarise each agent's reasoning and final answer in a few sentences."
    )

    def parse(self, text: str) -> str | None:
        """Last \\boxed{} number, else the last number in the text."""
        return parse_numeric_answer(text)

    def equivalent(self, a: str, b: str) -> bool:
        """Numbers compare numerically."""
        return numbers_equal(a, b)

    def normalize_reference(self, raw: str) -> str:
        """Canonical number; a reference answer must be a number."""
        value = to_fraction(str(raw))
        if value is None:
            raise InvalidTaskOptionError(f"answer {raw!r} is not a number (task {self.name})")
        return canonical_number(value)
