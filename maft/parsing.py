"""Answer extraction: the last brace-balanced \\boxed{...}, with a last-number fallback."""

from __future__ import annotations

import re
from fractions import Fraction

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
# A minus sign right after a digit, letter or closing bracket is an operator or a hyphen
# ("3-4", "x-3"), not a sign. Commas count only as thousands separators ("1,000", not "1,2").
_SIGN = r"(?:(?<![\w)\]}])-)?"
_NUMBER = re.compile(
    _SIGN + r"\$?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?(?:/\d+)?|" + _SIGN + r"\.\d+")
_FRAC = re.compile(r"\\[dt]?frac\s*(?:\{([^{}]+)\}|(\d))\s*(?:\{([^{}]+)\}|(\d))")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
# What Fraction() may see: exponents of at most 3 digits (Fraction("1e99999999") takes minutes).
_EXACT = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d{1,3})?|-?\d+/\d+")
_MAX_CHARS = 1000
_MINUS = str.maketrans({"\u2212": "-", "\u2013": "-"})


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
    found = _NUMBER.findall(text.translate(_MINUS))
    return found[-1] if found else None


def to_fraction(raw: str) -> Fraction | None:
    """Parse a numeric answer (`1,000`, `$5`, `3/4`, `\\frac{1}{2}`, `50%`, `2.50`) exactly."""
    s = _FRAC.sub(lambda m: f"{m[1] or m[2]}/{m[3] or m[4]}", raw.strip().translate(_MINUS))
    s = re.sub(r"\\text\{[^{}]*\}|\\[,!; ]|[$€£\s]|\\%|%|\\\$", "", s)
    s = _THOUSANDS.sub("", s).rstrip(".")
    if s.startswith("+"):
        s = s[1:]
    if len(s) > _MAX_CHARS or not _EXACT.fullmatch(s):
        return None
    try:
        return Fraction(s)
    except (ValueError, ZeroDivisionError):
        return None


def canonical_number(value: Fraction) -> str:
    """Canonical text of a number: integers plainly, others as a short decimal."""
    if value.denominator == 1:
        return str(value.numerator)
    try:
        return f"{float(value):.10g}"
    except OverflowError:  # beyond float range: the fractional part is noise anyway
        return str(round(value))


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
    """Numeric equivalence of two answers; answers that do not parse are never equal.

    Two integers compare exactly (1000000 != 1000001); otherwise a relative tolerance of
    `rel_tol` (absolute below 1) absorbs rounded decimals such as 0.3333333333 for 1/3.
    """
    fa, fb = to_fraction(a), to_fraction(b)
    if fa is None or fb is None:
        return False
    if fa == fb:
        return True
    if fa.denominator == 1 and fb.denominator == 1:
        return False
    return abs(fa - fb) <= Fraction(rel_tol) * max(Fraction(1), abs(fa), abs(fb))
