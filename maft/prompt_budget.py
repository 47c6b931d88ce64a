"""The largest prompts a debate can send, to check them against the model's context up front.

The rule: round m's critic continues its own conversation, so the last round's critic prompt
holds the question's prompt, then per earlier round one own answer and one critic turn carrying
the other agents' answers (or a summary); every other prompt of the debate is a prefix of it.
Taking every answer (and summary) as `max_tokens` tokens long, that prompt plus `max_tokens`
must fit the context; with `summarize`, so must the summarizer's prompt plus `max_tokens`.
A debate that passes can never overflow the context, whatever the agents write.
"""

from __future__ import annotations

from maft.debate import DebateConfig
from maft.tasks.base import Message, Task


def filler(tokens: int) -> str:
    """Text of about `tokens` tokens (one short word each), standing for a model's answer."""
    return " ".join(["x"] * max(tokens, 1))


def largest_prompts(task: Task, question: str, config: DebateConfig) -> list[list[Message]]:
    """The last round's critic prompt (and the summarizer's) with answers of max_tokens."""
    answer = filler(config.sampling.max_tokens)
    others = [answer] * (config.agents - 1)
    messages = task.generation_messages(question)
    for _ in range(2, config.rounds + 1):
        advice = (task.critic_summary_message(answer) if config.summarize
                  else task.critic_message(others))
        messages = [*messages, {"role": "assistant", "content": answer}, advice]
    prompts = [messages]
    if config.summarize and config.rounds > 1:
        prompts.append(task.summarizer_messages(question, others))
    return prompts
