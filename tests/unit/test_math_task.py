"""The math task (maft/tasks/math.py) and its bounded equivalence (maft/tasks/symbolic.py)."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import pytest

from maft.exceptions import InvalidTaskOptionError
from maft.tasks import MathTask, Problem, get_task, split_of, symbolic, task_names
from maft.tasks.math import SAMPLE_PATH, level_of, load_jsonl, reference_of
from maft.voting import majority_vote

SAMPLE = str(SAMPLE_PATH)
TASK = MathTask()

EQUIVALENT = [
    (r"\frac{1}{2}", "0.5"),
    (r"\frac{1}{2}", r"\dfrac12"),
    (r"\dfrac12", "1/2"),
    (r"\frac34", "0.75"),
    (r"2\sqrt{3}", r"\sqrt{12}"),
    (r"\frac{\sqrt{3}}{2}", r"\frac{1}{2}\sqrt3"),
    (r"\sqrt{2}+\sqrt{3}", r"\sqrt{5+2\sqrt{6}}"),
    ("x+1", "1+x"),
    ("x^2-x-6", "(x+2)(x-3)"),
    (r"9\pi", r"9 \pi"),
    ("(1, 2]", "(1,2]"),
    (r"(-\infty, 4)", r"(-\infty,4)"),
    (r"[-2, 3)", r"[-2,3)"),
    ("(2, 3)", "(2,3)"),
    ("-5", "-5.0"),
    (r"-\frac{3}{4}", "-0.75"),
    ("100", "100"),
    ("1,000", "1000"),
    (r"\{1,2\}", r"\{2,1\}"),
    (r"\text{Monday}", "Monday"),
    (" x  + 1", "x + 1"),
]
DIFFERENT = [
    ("-5", "5"),
    ("3", "4"),
    (r"\frac{1}{2}", r"\frac{1}{3}"),
    (r"2\sqrt{3}", r"3\sqrt{2}"),
    ("(2, 3)", "(3, 2)"),
    ("(1, 2]", "[1, 2]"),
    (r"(-\infty, 4)", r"(-\infty, 4]"),
    ("x+1", "x-1"),
    (r"\pi", "3.14"),
    ("", "1"),
]
# Each would run for hours or never finish without the time limit.
PATHOLOGICAL = [r"10^{10^{10}}", "9999999999!", r"(10^{8})!", r"\binom{10^{9}}{5\cdot 10^{8}}",
                r"9^{9^{9}}"]
GARBAGE = ["{" * 400 + "}" * 400, "(" * 300 + ")" * 300, "1" * 5000, r"\frac{1}{", "}{", "$$",
           r"\boxed{", "\\", "\x00", r"\sqrt{-"]


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> float:
    """A short comparison time limit, so that the pathological cases cost little CPU."""
    monkeypatch.setattr(symbolic, "TIME_LIMIT_S", 0.3)
    return 0.3


# -- parsing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"so \boxed{\frac{1}{\sqrt{2}}}.", r"\frac{1}{\sqrt{2}}"),
        (r"\boxed{1} at first, then \boxed{ \left\{ 2, 3 \right\} }", r"\left\{ 2, 3 \right\}"),
        (r"$\boxed{(-\infty, 4)}$", r"(-\infty, 4)"),
        (r"\fbox{x^{2^{3}}}", "x^{2^{3}}"),
        (r"\boxed {-5}", "-5"),
        (r"\boxed{1} then \boxed{2", "1"),  # an unclosed last box: the last balanced one
        ("The answer is 5.", None),  # no fall-back to the last number for math
        (r"\boxed{}", None),
        (r"\boxed{   }", None),
        ("", None),
    ],
)
def test_parse(text: str, expected: str | None) -> None:
    assert TASK.parse(text) == expected


def test_unparseable_is_never_correct() -> None:
    assert not TASK.is_correct(None, "5")
    assert not TASK.is_correct(TASK.parse("The answer is 5."), "5")
    assert not TASK.is_correct(TASK.parse(r"\boxed{}"), "5")
    assert TASK.is_correct(TASK.parse(r"So \boxed{\dfrac{10}{2}}."), "5")


# -- equivalence ------------------------------------------------------------------------------


@pytest.mark.parametrize(("a", "b"), EQUIVALENT)
def test_equivalent(a: str, b: str) -> None:
    assert TASK.equivalent(a, b)
    assert TASK.equivalent(b, a)


@pytest.mark.parametrize(("a", "b"), DIFFERENT)
def test_not_equivalent(a: str, b: str) -> None:
    assert not TASK.equivalent(a, b)
    assert not TASK.equivalent(b, a)


@pytest.mark.parametrize("answer", PATHOLOGICAL)
def test_pathological_answers_time_out(quick: float, answer: str) -> None:
    start = time.monotonic()
    assert not TASK.equivalent(answer, "3")
    assert time.monotonic() - start < quick + 2


@pytest.mark.parametrize("answer", GARBAGE)
def test_garbage_is_not_equivalent(quick: float, answer: str) -> None:
    start = time.monotonic()
    assert not TASK.equivalent(answer, "1")
    assert not TASK.is_correct(answer, "1")
    assert time.monotonic() - start < 2 * quick + 2
    assert TASK.equivalent(answer, answer)  # equal text needs no parsing


def test_time_limit_keeps_an_outer_alarm(quick: float) -> None:
    fired: list[int] = []
    previous = signal.signal(signal.SIGALRM, lambda signum, frame: fired.append(signum))
    try:
        signal.setitimer(signal.ITIMER_REAL, 30)
        assert not TASK.equivalent(PATHOLOGICAL[0], "3")
        remaining, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 20 < remaining <= 30
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        time.sleep(0.5)
        assert fired == [signal.SIGALRM]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_an_outer_alarm_due_first_still_fires(quick: float) -> None:
    fired: list[int] = []
    previous = signal.signal(signal.SIGALRM, lambda signum, frame: fired.append(signum))
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        assert not TASK.equivalent(PATHOLOGICAL[1], "3")
        time.sleep(0.2)
        assert fired == [signal.SIGALRM]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def in_thread(pairs: list[tuple[str, str]]) -> list[bool]:
    results: list[bool] = []
    worker = threading.Thread(target=lambda: results.extend(TASK.equivalent(a, b)
                                                            for a, b in pairs))
    worker.start()
    worker.join(timeout=120)
    assert not worker.is_alive()
    return results


def test_equivalence_off_the_main_thread(monkeypatch: pytest.MonkeyPatch, quick: float
                                         ) -> None:
    # Off the main thread no alarm works: a worker process compares, and is killed when late.
    assert in_thread([(r"2\sqrt{3}", r"\sqrt{12}"), ("x+1", "x-1"), (PATHOLOGICAL[0], "3")]) == [
        True, False, False]
    monkeypatch.setattr(symbolic, "WORKER_WAIT_S", 0.0)
    assert in_thread([(r"\frac{1}{2}", "0.5")]) == [False]
    assert symbolic._worker is None
    monkeypatch.setattr(symbolic, "WORKER_WAIT_S", 60.0)
    assert in_thread([(r"\frac{1}{2}", "0.5")]) == [True]


def test_majority_vote_groups_equivalent_answers() -> None:
    vote = majority_vote([r"\frac{1}{2}", "1", "0.5", None], TASK.equivalent)
    assert (vote.answer, vote.votes, vote.total) == (r"\frac{1}{2}", 2, 4)


# -- references -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (r"\boxed{\frac{3}{4}}", r"\frac{3}{4}"),
        (r" $x+1$ ", "x+1"),
        (r"$\boxed{(1, 2]}$", "(1, 2]"),
        ("-5", "-5"),
        (r" 2\sqrt{3} ", r"2\sqrt{3}"),
        (r"5\$", r"5\$"),
        ("$$x^2$$", "x^2"),
    ],
)
def test_normalize_reference(raw: str, expected: str) -> None:
    assert TASK.normalize_reference(raw) == expected


@pytest.mark.parametrize("raw", ["", "   ", "$$", r"\boxed{}", r"\boxed{1"])
def test_normalize_reference_rejects(raw: str) -> None:
    with pytest.raises(InvalidTaskOptionError):
        TASK.normalize_reference(raw)


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ({"solution": r"So $x=\boxed{\frac{1}{\sqrt{2}}}$."}, r"\frac{1}{\sqrt{2}}"),
        ({"solution": r"First \boxed{1}, finally \boxed{2}."}, "2"),
        ({"solution": r"\boxed{9}", "answer": "3"}, "3"),  # an explicit answer wins
        ({"solution": "", "answer": 7}, "7"),
        ({"solution": r"\boxed{9}", "answer": "  "}, "9"),
        ({"solution": "no box"}, None),
        ({"solution": r"\boxed{ }"}, None),
    ],
)
def test_reference_of(row: dict[str, object], expected: str | None) -> None:
    assert reference_of(row) == expected


@pytest.mark.parametrize(("raw", "expected"),
                         [("Level 3", 3), (3, 3), ("2", 2), ("Level ?", None), (None, None),
                          (True, None)])
def test_level_of(raw: object, expected: int | None) -> None:
    assert level_of(raw) == expected


# -- problems ---------------------------------------------------------------------------------


def test_sample_file() -> None:
    rows = load_jsonl(SAMPLE)
    assert len(rows) >= 12
    assert all(r.level in range(1, 6) and r.subject for r in rows)
    answers = {r.problem.answer for r in rows}
    assert {r"\frac{3}{4}", r"2\sqrt{3}", r"(-\infty, 4)", "(2, 3)", "-5", "100"} <= answers
    for r in rows:  # a response boxing the reference is right
        assert TASK.is_correct(TASK.parse(f"So it is \\boxed{{{r.problem.answer}}}."),
                               r.problem.answer)


def test_problems_from_the_sample() -> None:
    task = MathTask(path=SAMPLE)
    questions = [r.problem.question for r in load_jsonl(SAMPLE)]
    n_test = sum(split_of(q) == "test" for q in questions)
    n_train = len(questions) - n_test
    assert n_test >= 1
    train = task.problems(n_train, seed=0, split="train")
    test = task.problems(n_test, seed=0, split="test")
    assert {p.question for p in train}.isdisjoint({p.question for p in test})
    assert all(split_of(p.question) == "test" for p in test)
    assert len({p.question for p in train}) == n_train
    everything = task.problems(len(questions), seed=3, split="all")
    assert sorted(p.question for p in everything) == sorted(questions)
    assert task.problems(5, seed=5) == task.problems(5, seed=5)
    assert task.problems(5, seed=5) != task.problems(5, seed=6)
    with pytest.raises(InvalidTaskOptionError, match=f"only {n_test} test problems"):
        task.problems(n_test + 1, seed=0, split="test")


def test_level_and_subject_filters() -> None:
    level = {r.problem.question: r.level for r in load_jsonl(SAMPLE)}
    subject = {r.problem.question: r.subject for r in load_jsonl(SAMPLE)}
    easy = MathTask(path=SAMPLE, levels=[3, 1, 2])
    assert easy.options() == {"path": SAMPLE, "levels": [1, 2, 3], "subjects": None}
    n_easy = sum(v in (1, 2, 3) for v in level.values())
    assert n_easy < len(level)
    picked = easy.problems(n_easy, seed=1, split="all")
    assert all(level[p.question] in (1, 2, 3) for p in picked)
    with pytest.raises(InvalidTaskOptionError, match=r"levels \[1, 2, 3\]"):
        easy.problems(n_easy + 1, seed=1, split="all")
    algebra = MathTask(path=SAMPLE, subjects=["Algebra"]).problems(3, seed=0, split="all")
    assert {subject[p.question] for p in algebra} == {"Algebra"}


@pytest.mark.parametrize(
    "options",
    [{"levels": [0]}, {"levels": [6]}, {"levels": "1"}, {"levels": [True]}, {"levels": []},
     {"levels": ["1"]}, {"subjects": "Algebra"}, {"subjects": [1]}, {"file": "x"}],
)
def test_bad_options(options: dict[str, object]) -> None:
    with pytest.raises(InvalidTaskOptionError):
        get_task("math", **options)


def test_needs_a_path_for_problems_only() -> None:
    task = get_task("math")
    assert "math" in task_names()
    assert isinstance(task, MathTask)
    assert task.options() == {"path": None, "levels": None, "subjects": None}
    assert task.is_correct(task.parse(r"\boxed{\dfrac{1}{2}}"), task.normalize_reference("0.5"))
    with pytest.raises(InvalidTaskOptionError, match="path"):
        task.problems(1, seed=0)


def write_jsonl(path: Path, rows: list[object]) -> str:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n",
                    encoding="utf-8")
    return str(path)


def test_tmp_file(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "m.jsonl", [
        {"problem": " What is 1+1? ", "solution": r"It is \boxed{2}."},
        {"problem": "What is 1+1? ", "solution": r"Again \boxed{2}."},  # a repeated question
        {"problem": "Unanswered?", "solution": "no box"},
        {"problem": "Given?", "solution": "", "answer": r"\frac{1}{3}", "level": 2},
        "",
    ])
    assert [r.problem for r in load_jsonl(path)] == [
        Problem("What is 1+1?", "2"), Problem("What is 1+1?", "2"),
        Problem("Given?", r"\frac{1}{3}")]
    task = MathTask(path=path)
    assert len(task.problems(2, seed=0, split="all")) == 2
    with pytest.raises(InvalidTaskOptionError, match="only 2 all problems"):
        task.problems(3, seed=0, split="all")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidTaskOptionError, match="does not exist"):
        MathTask(path=str(tmp_path / "nope.jsonl")).problems(1, seed=0)


@pytest.mark.parametrize(
    "bad_line",
    ["{not json", '{"solution": "\\\\boxed{1}"}', '{"problem": "q"}', '["problem"]',
     '{"problem": 5, "solution": "\\\\boxed{1}"}', '{"problem": "q", "solution": 12}'],
)
def test_malformed_row(tmp_path: Path, bad_line: str) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl",
                       [{"problem": "ok", "solution": r"\boxed{1}"}, bad_line])
    with pytest.raises(InvalidTaskOptionError, match=r"bad\.jsonl:2: not a MATH row"):
        load_jsonl(path)


# -- prompts ----------------------------------------------------------------------------------


def test_prompts() -> None:
    [message] = TASK.generation_messages("What is $1+1$?")
    assert message["role"] == "user"
    assert message["content"].startswith("What is $1+1$?")
    assert r"\boxed{answer}" in message["content"]
    critic = TASK.critic_message([r"so \boxed{2}", r"so \boxed{3}"])["content"]
    assert "Agent 1" in critic and r"\boxed{3}" in critic and r"\boxed{answer}" in critic
    assert "a summary" in TASK.critic_summary_message("they said 2")["content"]
    [summary] = TASK.summarizer_messages("What is $1+1$?", [r"\boxed{2}"])
    assert "What is $1+1$?" in summary["content"]
    [hinted] = TASK.hinted_generation_messages("Q?", r"\frac{1}{2}")
    assert hinted["content"].endswith(r"the correct answer is \frac{1}{2}.")
