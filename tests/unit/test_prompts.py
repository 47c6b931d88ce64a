"""Prompt shapes (maft/tasks/base.py + numeric templates): generation, critic, summary, hint."""

from __future__ import annotations

import pytest

from maft.tasks import ArithmeticTask, GSM8KTask, NumericTask, Task

QUESTION = "What is the result of 3+4*5? {not a format field}"
OTHERS = ["Agent reasoning ALPHA. \\boxed{23}", "Agent reasoning BETA. \\boxed{35}"]
OWN = "My own reasoning OWN. \\boxed{23}"

TASKS = [NumericTask(), ArithmeticTask(), GSM8KTask()]


@pytest.fixture(params=TASKS, ids=lambda t: t.name)
def task(request: pytest.FixtureRequest) -> Task:
    chosen: Task = request.param
    return chosen


def test_generation_prompt(task: Task) -> None:
    messages = task.generation_messages(QUESTION)
    assert len(messages) == 1
    assert messages[0]["role"] == "user"
    content = messages[0]["content"]
    assert content.startswith(QUESTION)  # braces in the question survive formatting
    assert "\\boxed{answer}" in content
    assert "reasoning" in content.lower()


def test_hinted_generation_prompt(task: Task) -> None:
    plain = task.generation_messages(QUESTION)[0]["content"]
    messages = task.hinted_generation_messages(QUESTION, "23")
    assert len(messages) == 1
    assert messages[0]["role"] == "user"
    content = messages[0]["content"]
    assert content.startswith(plain)
    assert "23" in content[len(plain):]
    assert "\\boxed{answer}" in content


def test_critic_message_carries_every_other_response(task: Task) -> None:
    message = task.critic_message(OTHERS)
    assert message["role"] == "user"
    content = message["content"]
    for text in OTHERS:
        assert text in content
    assert content.index("ALPHA") < content.index("BETA")
    assert OWN not in content
    assert "OWN" not in content
    assert "\\boxed{answer}" in content
    assert "updated answer" in content


def test_critic_message_with_braces_in_responses(task: Task) -> None:
    others = ["{x} and {0} and {others}", "\\frac{1}{2}"]
    content = task.critic_message(others)["content"]
    for text in others:
        assert text in content


def test_format_others_numbers_blocks(task: Task) -> None:
    block = task.format_others(["  first  ", "second"])
    assert "Agent 1" in block and "Agent 2" in block
    assert "first" in block and "second" in block
    assert block.index("first") < block.index("second")
    assert "Agent 3" not in block


def test_critic_summary_message(task: Task) -> None:
    summary = "SUMMARY: agent 1 says 23, agent 2 says 35."
    message = task.critic_summary_message(summary)
    assert message["role"] == "user"
    assert summary in message["content"]
    assert "summary" in message["content"].lower()
    assert "\\boxed{answer}" in message["content"]
    for text in OTHERS:
        assert text not in message["content"]


def test_summarizer_prompt(task: Task) -> None:
    messages = task.summarizer_messages(QUESTION, OTHERS)
    assert len(messages) == 1
    assert messages[0]["role"] == "user"
    content = messages[0]["content"]
    assert QUESTION in content
    for text in OTHERS:
        assert text in content
    assert "summar" in content.lower()
