"""Tasks (maft/tasks): registry, arithmetic generator, GSM8K loader, numeric references."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from maft.exceptions import InvalidTaskOptionError, UnknownTaskError
from maft.tasks import (
    REGISTRY,
    ArithmeticSpec,
    ArithmeticTask,
    GSM8KTask,
    NumericTask,
    Problem,
    get_task,
    split_of,
    task_names,
)
from maft.tasks.arithmetic import evaluate, render
from maft.tasks.gsm8k import load_jsonl, reference_answer

GSM8K_TRAIN = Path("/work/shared/datasets/gsm8k/train.jsonl")
_QUESTION = re.compile(r"^What is the result of (.+)\?$")


def expression_of(problem: Problem) -> str:
    match = _QUESTION.match(problem.question)
    assert match, problem.question
    return match[1]


# -- registry ---------------------------------------------------------------------------------


def test_registry_names() -> None:
    assert {"arithmetic", "gsm8k", "numeric"} <= set(task_names())
    assert task_names() == sorted(task_names())
    for name in task_names():
        assert REGISTRY[name].name == name


def test_get_task_returns_instances() -> None:
    assert isinstance(get_task("arithmetic"), ArithmeticTask)
    assert isinstance(get_task("numeric"), NumericTask)
    task = get_task("gsm8k", path="x.jsonl")
    assert isinstance(task, GSM8KTask)
    assert task.options() == {"path": "x.jsonl"}


def test_unknown_task_lists_known_ones() -> None:
    with pytest.raises(UnknownTaskError) as info:
        get_task("chess")
    message = str(info.value)
    assert "chess" in message
    for name in task_names():
        assert name in message
    assert info.value.name == "chess"


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("numeric", {"difficulty": 3}),
        ("gsm8k", {"file": "x"}),
        ("arithmetic", {"digits": 3}),
        ("arithmetic", {"terms": 1}),
        ("arithmetic", {"terms": 13}),
        ("arithmetic", {"terms": 3}),  # the paper pattern has 5 operators
        ("arithmetic", {"terms": 3, "pattern": "+/"}),
        ("arithmetic", {"terms": 3, "pattern": None, "operators": "+/"}),
        ("arithmetic", {"terms": 3, "pattern": None, "operators": ""}),
        ("arithmetic", {"low": 5, "high": 5}),
        ("arithmetic", {"low": 9, "high": 3}),
        ("arithmetic", {"terms": "6"}),
        ("arithmetic", {"low": "0", "high": "30"}),
        ("arithmetic", {"high": 30.5}),
        ("arithmetic", {"terms": 3, "pattern": ["+", "*"]}),
    ],
)
def test_bad_options(name: str, options: dict[str, object]) -> None:
    with pytest.raises(InvalidTaskOptionError):
        get_task(name, **options)


# -- arithmetic -------------------------------------------------------------------------------


def test_paper_default_pattern() -> None:
    task = ArithmeticTask()
    assert task.options() == {"terms": 6, "pattern": "+*+-*", "operators": "+-*",
                              "low": 0, "high": 30}
    problems = task.problems(200, seed=1)
    for p in problems:
        expr = expression_of(p)
        assert re.fullmatch(r"\d+\+\d+\*\d+\+\d+-\d+\*\d+", expr), expr
        operands = [int(x) for x in re.findall(r"\d+", expr)]
        assert len(operands) == 6
        assert all(0 <= x < 30 for x in operands)
    # the whole range is used, ends included
    seen = {int(x) for p in problems for x in re.findall(r"\d+", expression_of(p))}
    assert min(seen) == 0
    assert max(seen) == 29


def test_arithmetic_answers_are_exact_python_eval() -> None:
    for task in (ArithmeticTask(), ArithmeticTask(terms=5, pattern=None, low=-9, high=10),
                 ArithmeticTask(terms=4, pattern="*-*", low=0, high=100)):
        for p in task.problems(150, seed=7, split="all"):
            expr = expression_of(p)
            assert re.fullmatch(r"[-+*0-9]+", expr)
            assert p.answer == str(eval(expr)), expr  # the regex above: digits and + - * only


def test_evaluate_precedence() -> None:
    assert evaluate([2, 3, 4], "+*") == 14
    assert evaluate([2, 3, 4], "*+") == 10
    assert evaluate([10, 2, 3], "-*") == 4
    assert evaluate([10, 2, 3, 4], "-*-") == 0
    assert evaluate([1, 2, 3, 4, 5, 6], "+*+-*") == 1 + 2 * 3 + 4 - 5 * 6
    assert evaluate([2, 3, 4, 5], "***") == 120
    assert evaluate([7, 0], "*") == 0
    assert evaluate([3, -4], "-") == 7
    assert render([1, 2, 3], "+*") == "1+2*3"


def test_arithmetic_seeded_reproducibility() -> None:
    task = ArithmeticTask()
    assert task.problems(50, seed=3) == task.problems(50, seed=3)
    assert task.problems(50, seed=3) != task.problems(50, seed=4)
    # a longer list extends a shorter one with the same seed
    assert task.problems(80, seed=3)[:50] == task.problems(50, seed=3)


def test_arithmetic_problems_distinct() -> None:
    problems = ArithmeticTask(terms=2, pattern="+", low=0, high=20).problems(150, seed=0,
                                                                               split="all")
    assert len({p.question for p in problems}) == 150


def test_arithmetic_splits_are_disjoint_and_labelled() -> None:
    task = ArithmeticTask(terms=3, pattern="+*", low=0, high=10)
    train = task.problems(300, seed=0, split="train")
    test = task.problems(150, seed=0, split="test")
    assert {p.question for p in train}.isdisjoint({p.question for p in test})
    assert all(split_of(p.question) == "train" for p in train)
    assert all(split_of(p.question) == "test" for p in test)


def test_arithmetic_difficulty_knob() -> None:
    task = get_task("arithmetic", terms=2, pattern=None, operators="+", low=1, high=4)
    problems = task.problems(9, seed=0, split="all")  # exactly 3*3 distinct problems
    assert {expression_of(p) for p in problems} == {f"{a}+{b}" for a in (1, 2, 3)
                                                    for b in (1, 2, 3)}
    for p in problems:
        a, b = map(int, expression_of(p).split("+"))
        assert p.answer == str(a + b)


def test_arithmetic_random_operators_come_from_the_set() -> None:
    task = ArithmeticTask(terms=4, pattern=None, operators="-*")
    ops = {c for p in task.problems(100, seed=2) for c in expression_of(p) if not c.isdigit()}
    assert ops == {"-", "*"}


def test_arithmetic_not_enough_distinct_problems() -> None:
    task = ArithmeticTask(terms=2, pattern="+", low=0, high=2)  # 4 questions in all
    assert len(task.problems(4, seed=0, split="all")) == 4
    with pytest.raises(InvalidTaskOptionError, match="distinct"):
        task.problems(5, seed=0, split="all")


def test_bad_split_name() -> None:
    with pytest.raises(InvalidTaskOptionError):
        ArithmeticTask().problems(3, seed=0, split="validation")


def test_arithmetic_spec_rejects_bad_values_directly() -> None:
    with pytest.raises(InvalidTaskOptionError):
        ArithmeticSpec(terms=2, pattern="++")
    assert ArithmeticSpec(terms=2, pattern="-").pattern == "-"


def test_split_of_is_stable_and_whitespace_insensitive() -> None:
    questions = [f"What is {i}?" for i in range(2000)]
    splits = [split_of(q) for q in questions]
    assert set(splits) == {"train", "test"}
    assert splits == [split_of(q) for q in questions]
    assert all(split_of("  " + q + "\n") == s for q, s in zip(questions, splits, strict=True))
    share = splits.count("test") / len(splits)
    assert 0.15 < share < 0.25


# -- gsm8k ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("so 48+24=72\n#### 72", "72"),
        ("#### 1,000", "1000"),
        ("#### -5", "-5"),
        ("#### 2.50", "2.5"),
        ("a #### b #### 7", "7"),
        ("no marker 72", None),
        ("#### seventy", None),
    ],
)
def test_reference_answer(field: str, expected: str | None) -> None:
    assert reference_answer(field) == expected


@pytest.mark.skipif(not GSM8K_TRAIN.is_file(), reason="shared GSM8K file missing")
def test_gsm8k_real_file() -> None:
    problems = load_jsonl(str(GSM8K_TRAIN))
    assert len(problems) > 7000
    first = problems[0]
    assert first.question.startswith("Natalia sold clips")
    assert first.answer == "72"
    # answers with thousands separators are canonicalised
    rows = [json.loads(line) for line in GSM8K_TRAIN.open(encoding="utf-8")]
    with_comma = next(r for r in rows if "," in r["answer"].rsplit("####", 1)[1])
    raw = with_comma["answer"].rsplit("####", 1)[1].strip()
    loaded = {p.question: p.answer for p in problems}
    assert loaded[with_comma["question"].strip()] == raw.replace(",", "")
    task = GSM8KTask(path=str(GSM8K_TRAIN))
    train = task.problems(300, seed=0, split="train")
    test = task.problems(100, seed=0, split="test")
    assert {p.question for p in train}.isdisjoint({p.question for p in test})
    assert all(split_of(p.question) == "test" for p in test)
    assert task.problems(20, seed=5) == task.problems(20, seed=5)
    assert task.problems(20, seed=5) != task.problems(20, seed=6)


def write_jsonl(path: Path, rows: list[object]) -> str:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n",
                    encoding="utf-8")
    return str(path)


def make_rows(n: int) -> list[object]:
    return [{"question": f"Question number {i}: how many apples?",
             "answer": f"Because.\n#### {i * 1000:,}"} for i in range(n)]


def test_gsm8k_tmp_file(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "g.jsonl", [*make_rows(200), ""])
    problems = load_jsonl(path)
    assert len(problems) == 200
    assert problems[5] == Problem("Question number 5: how many apples?", "5000")
    task = GSM8KTask(path=path)
    everything = task.problems(200, seed=1, split="all")
    assert sorted(p.question for p in everything) == sorted(p.question for p in problems)
    assert task.problems(10, seed=1) == task.problems(10, seed=1)
    train = {p.question for p in task.problems(100, seed=0, split="train")}
    n_test = sum(split_of(p.question) == "test" for p in problems)
    test = {p.question for p in task.problems(n_test, seed=0, split="test")}
    assert train.isdisjoint(test)
    with pytest.raises(InvalidTaskOptionError, match="only"):
        task.problems(n_test + 1, seed=0, split="test")


def test_gsm8k_utf8_file(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "u.jsonl",
                       ['{"question": "Jos\u00e9 pays \u20ac5", "answer": "#### 5"}'])
    assert load_jsonl(path) == (Problem("Jos\u00e9 pays \u20ac5", "5"),)


def test_gsm8k_rows_without_numeric_answer_are_skipped(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "s.jsonl", [
        {"question": "q1", "answer": "#### 3"},
        {"question": "q2", "answer": "no marker"},
        {"question": "q3", "answer": "#### many"},
    ])
    assert load_jsonl(path) == (Problem("q1", "3"),)


def test_gsm8k_missing_file(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.jsonl")
    with pytest.raises(InvalidTaskOptionError, match="does not exist"):
        load_jsonl(missing)
    with pytest.raises(InvalidTaskOptionError, match="does not exist"):
        GSM8KTask(path=missing).problems(1, seed=0)


def test_gsm8k_needs_a_path() -> None:
    with pytest.raises(InvalidTaskOptionError, match="path"):
        GSM8KTask().problems(1, seed=0)


@pytest.mark.parametrize(
    "bad_line",
    [
        "{not json",
        '{"question": "q"}',
        '{"answer": "#### 1"}',
        '["question", "answer"]',
        '{"question": 5, "answer": "#### 1"}',
        '{"question": "q", "answer": 12}',
    ],
)
def test_gsm8k_malformed_row(tmp_path: Path, bad_line: str) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", [{"question": "ok", "answer": "#### 1"}, bad_line])
    with pytest.raises(InvalidTaskOptionError, match=r"bad\.jsonl:2"):
        load_jsonl(path)


def test_gsm8k_undecodable_bytes(tmp_path: Path) -> None:
    path = tmp_path / "bin.jsonl"
    path.write_bytes(b'{"question": "ok", "answer": "#### 1"}\n\xff\xfe\x00garbage\n')
    with pytest.raises(InvalidTaskOptionError, match=r"bin\.jsonl:2"):
        load_jsonl(str(path))


# -- numeric ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("72", "72"), ("1,000", "1000"), ("$5.50", "5.5"), ("1/2", "0.5"), ("-3", "-3"),
     ("100.0", "100"), (" 7 ", "7"), (r"\frac{3}{4}", "0.75")],
)
def test_normalize_reference(raw: str, expected: str) -> None:
    for task in (NumericTask(), ArithmeticTask(), GSM8KTask()):
        assert task.normalize_reference(raw) == expected


@pytest.mark.parametrize("raw", ["", "seven", "x+1", "1e99999999"])
def test_normalize_reference_rejects_non_numbers(raw: str) -> None:
    with pytest.raises(InvalidTaskOptionError, match="not a number"):
        NumericTask().normalize_reference(raw)


def test_numeric_task_parse_and_correctness() -> None:
    task = NumericTask()
    assert task.parse(r"so \boxed{1,000}") == "1000"
    assert task.parse("no idea") is None
    assert task.is_correct("1000", "1,000.0")
    assert not task.is_correct("999", "1000")
    assert not task.is_correct(None, "1000")
    assert task.equivalent("0.5", "1/2")


def test_numeric_task_has_no_problem_source() -> None:
    with pytest.raises(InvalidTaskOptionError):
        NumericTask().problems(1, seed=0)
