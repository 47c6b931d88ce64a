"""The paper's arithmetic task (`a+b*c+d-e*f`) with a difficulty knob."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass

from maft.exceptions import InvalidTaskOptionError
from maft.tasks.base import Problem, check_split, split_of
from maft.tasks.numeric import NumericTask

PAPER_PATTERN = "+*+-*"
_MAX_TRIES_PER_PROBLEM = 200


@dataclass(frozen=True)
class ArithmeticSpec:
    """Difficulty knob.

    terms: number of operands; pattern: a fixed operator sequence of length terms-1
    (the paper's is "+*+-*"), or None to draw each operator from `operators`;
    operands are integers in [low, high).
    """

    terms: int = 6
    pattern: str | None = PAPER_PATTERN
    operators: str = "+-*"
    low: int = 0
    high: int = 30

    def __post_init__(self) -> None:
        for name in ("terms", "low", "high"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise InvalidTaskOptionError(f"arithmetic {name} must be an integer, not {value!r}")
        if not isinstance(self.operators, str) or not (
                self.pattern is None or isinstance(self.pattern, str)):
            raise InvalidTaskOptionError("arithmetic pattern and operators must be strings")
        if not 2 <= self.terms <= 12:
            raise InvalidTaskOptionError("arithmetic terms must be between 2 and 12")
        if self.pattern is not None and len(self.pattern) != self.terms - 1:
            raise InvalidTaskOptionError(
                f"arithmetic pattern {self.pattern!r} needs {self.terms - 1} operators "
                f"for {self.terms} terms")
        ops = self.pattern if self.pattern is not None else self.operators
        if not ops or set(ops) - set("+-*"):
            raise InvalidTaskOptionError("arithmetic operators must be drawn from '+', '-', '*'")
        if self.high <= self.low:
            raise InvalidTaskOptionError("arithmetic range needs low < high")


def evaluate(operands: list[int], operators: str) -> int:
    """Exact value of `o0 op0 o1 op1 ...` with the usual precedence (* before + and -)."""
    total, term, sign = 0, operands[0], 1
    for op, value in zip(operators, operands[1:], strict=True):
        if op == "*":
            term *= value
        else:
            total += sign * term
            term, sign = value, (1 if op == "+" else -1)
    return total + sign * term


def render(operands: list[int], operators: str) -> str:
    """The expression as text, e.g. `3+4*5`."""
    parts = [str(operands[0])]
    for op, value in zip(operators, operands[1:], strict=True):
        parts.append(f"{op}{value}")
    return "".join(parts)


class ArithmeticTask(NumericTask):
    """Generated arithmetic expressions with exact answers."""

    name = "arithmetic"
    description = "Arithmetic expressions like a+b*c+d-e*f (difficulty: terms, pattern, range)."

    def __init__(self, **options: object) -> None:
        try:
            self.spec = ArithmeticSpec(**options)  # type: ignore[arg-type]
        except TypeError as exc:
            raise InvalidTaskOptionError(f"bad arithmetic option: {exc}") from exc

    def options(self) -> dict[str, object]:
        """The difficulty knob."""
        return asdict(self.spec)

    def question(self, operands: list[int], operators: str) -> str:
        """The question text for one expression."""
        return f"What is the result of {render(operands, operators)}?"

    def sample(self, rng: random.Random) -> Problem:
        """One random problem."""
        s = self.spec
        operands = [rng.randrange(s.low, s.high) for _ in range(s.terms)]
        ops = s.pattern or "".join(rng.choice(s.operators) for _ in range(s.terms - 1))
        return Problem(self.question(operands, ops), str(evaluate(operands, ops)))

    def problems(self, n: int, *, seed: int, split: str = "train") -> list[Problem]:
        """`n` distinct problems of `split`, reproducible for a seed."""
        check_split(split)
        rng, seen, out = random.Random(seed), set[str](), list[Problem]()
        for _ in range(n * _MAX_TRIES_PER_PROBLEM):
            if len(out) == n:
                break
            p = self.sample(rng)
            if p.question in seen or (split != "all" and split_of(p.question) != split):
                continue
            seen.add(p.question)
            out.append(p)
        if len(out) < n:
            raise InvalidTaskOptionError(
                f"only {len(out)} distinct {split} problems exist for {self.spec}; ask for fewer "
                "or widen the operand range")
        return out
