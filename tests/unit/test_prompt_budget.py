"""The largest prompts of a debate, checked against the model's context before it starts."""

from __future__ import annotations

from maft.debate import DebateConfig
from maft.inference_client import Sampling
from maft.prompt_budget import filler, largest_prompts
from maft.tasks import get_task


def config(agents: int, rounds: int, summarize: bool = False) -> DebateConfig:
    """A debate shape with 50-token answers."""
    return DebateConfig(agents=agents, rounds=rounds, summarize=summarize,
                        sampling=Sampling(max_tokens=50))


def test_filler_stands_for_max_tokens_words() -> None:
    assert filler(3) == "x x x" and filler(0) == "x"


def test_one_round_is_the_question_prompt() -> None:
    task = get_task("numeric")
    [prompt] = largest_prompts(task, "What is 2+2?", config(3, 1))
    assert prompt == task.generation_messages("What is 2+2?")


def test_the_last_critic_carries_every_earlier_round() -> None:
    task = get_task("numeric")
    [prompt] = largest_prompts(task, "What is 2+2?", config(4, 3))
    assert prompt[0] == task.generation_messages("What is 2+2?")[0]
    assert [m["role"] for m in prompt] == ["user", "assistant", "user", "assistant", "user"]
    assert prompt[1]["content"] == filler(50)
    assert prompt[2]["content"].count(filler(50)) == 3  # the three other agents' answers


def test_summaries_add_the_summarizer_prompt() -> None:
    task = get_task("numeric")
    critic, summarizer = largest_prompts(task, "What is 2+2?", config(3, 2, summarize=True))
    assert critic[-1] == task.critic_summary_message(filler(50))
    assert summarizer == task.summarizer_messages("What is 2+2?", [filler(50)] * 2)
