"""Answer extraction: the last brace-balanced \\boxed{...}, with a last-number fallback."""

from __future__ import annotations

import re
from fractions import Fraction

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?(?:/\d+)?|-?\.\d+")
_FRAC = re.compile(r"\\[dt]?frac\{([^{}]+)\}\{([^{}]+)\}")


def last_boxed(text: str) -> str | None:
    """Content of the last brace-balanced `\\boxed{...}` in `text`, or None."""
    starts = [m.end() for m in _BOXED.finditer(text)]
    for start in reversed(starts):
        depth, i = 1, start
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            return text[start : i - 1].strip()
    return None


def last_number(text: str) -> str | None:
    """The last number-looking token in `text` (commas, `$`, fractions allowed), or None."""
    found = _NUMBER.findall(text)
    return found[-1] if found else None


def to_fraction(raw: str) -> Fraction | None:
    """Parse a numeric answer (`1,000`, `$5`, `3/4`, `\\frac{1}{2}`, `50%`, `2.50`) exactly."""
    s = _FRAC.sub(r"\1/\2", raw.strip())
    s = re.sub(r"\\text\{[^{}]*\}|\\[,!; ]|[$€£\s]|\\%|%|\\\$", "", s).replace(",", "")
    s = s.rstrip(".")
    if s.startswith("+"):
        s = s[1:]
    try:
        return Fraction(s)
    except (ValueError, ZeroDivisionError):
        return None


def canonical_number(value: Fraction) -> str:
    """Canonical text of a number: integers plainly, others as a short decimal."""
    if value.denominator == 1:
        return str(value.numerator)
    return f"{float(value):.10g}"


def parse_numeric_answer(text: str) -> str | None:
    """Canonical numeric answer of a response: last \\boxed{} if numeric, else last number."""
    boxed = last_boxed(text)
    if boxed is not None:
        value = to_fraction(boxed)
        if value is None:
            inner = last_number(boxed)
            value = to_fraction(inner) if inner else None
        if value is not None:
            return canonical_number(value)
    fallback = last_number(text)
    value = to_fraction(fallback) if fallback else None
    return canonical_number(value) if value is not None else None


def numbers_equal(a: str, b: str, *, rel_tol: float = 1e-6) -> bool:
    """Numeric equivalence of two answers; answers that do not parse are never equal."""
    fa, fb = to_fraction(a), to_fraction(b)
    if fa is None or fb is None:
        return False
    if fa == fb:
        return True
    return abs(float(fa) - float(fb)) <= rel_tol * max(1.0, abs(float(fa)), abs(float(fb)))
