"""Loss masks of chat examples, on SmolLM2's real tokenizer and ChatML template."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from services.trainer.lora.chat_encoding import IGNORE_INDEX, ExampleTooLongError, render
from services.trainer.lora.loop import ChatExample, encode_example

END = "<|im_end|>"


@pytest.fixture(scope="module")
def tokenizer(smollm2_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_dir)


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


def labelled_runs(ids: list[int], labels: list[int]) -> list[list[int]]:
    """Maximal runs of consecutive labelled positions, as token ids."""
    runs: list[list[int]] = []
    previous = IGNORE_INDEX
    for token, label in zip(ids, labels, strict=True):
        if label != IGNORE_INDEX:
            if previous == IGNORE_INDEX:
                runs.append([])
            runs[-1].append(token)
        previous = label
    return runs


def decoded_runs(tokenizer: Any, example: ChatExample) -> list[str]:
    ids, labels = encode_example(tokenizer, example, max_seq_len=4096)
    assert all(label in (IGNORE_INDEX, token) for token, label in zip(ids, labels, strict=True))
    return [tokenizer.decode(run) for run in labelled_runs(ids, labels)]


DEBATE = [
    user("What is 17 + 25? Put the answer in \\boxed{}."),
    assistant("17 + 25 = 42.\nThe answer is \\boxed{42}."),
    user("Other agents answered:\n\n\\boxed{41}\n\nGive an updated answer."),
    assistant(" I re-checked: 17 + 25 = 42, so \\boxed{42}."),
]


def test_single_turn_labels_exactly_the_answer_and_its_end_token(tokenizer: Any) -> None:
    example = ChatExample([user("Hi, what is 2+2?"), assistant("2+2 = 4, so \\boxed{4}.")])
    ids, labels = encode_example(tokenizer, example, max_seq_len=4096)
    first = next(i for i, label in enumerate(labels) if label != IGNORE_INDEX)
    assert labels[:first] == [IGNORE_INDEX] * first
    # Everything after the first labelled token is labelled, up to the end-of-turn token;
    # the template's newline after it is never generated and carries no loss.
    assert labels[first:-1] == ids[first:-1]
    assert labels[-1] == IGNORE_INDEX and tokenizer.decode(ids[-1:]) == "\n"
    assert tokenizer.decode(ids[first:-1]) == "2+2 = 4, so \\boxed{4}." + END


def prompt_ids(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    """The tokens vLLM feeds the model before it generates the next assistant turn."""
    prompt = render(tokenizer, messages, add_generation_prompt=True)
    return list(tokenizer(prompt, add_special_tokens=False)["input_ids"])


@pytest.mark.parametrize("answer", ["7", "  7 (two leading spaces merge with a newline)"])
def test_the_prompt_is_what_vllm_renders(tokenizer: Any, answer: str) -> None:
    """Prompt tokens equal the tokenized generation prompt, default system prompt included."""
    example = ChatExample([user("Name a prime number."), assistant(answer)])
    ids, labels = encode_example(tokenizer, example, max_seq_len=4096)
    assert "You are a helpful AI assistant named SmolLM" in tokenizer.decode(ids)
    prompt = prompt_ids(tokenizer, [user("Name a prime number.")])
    assert ids[: len(prompt)] == prompt
    assert set(labels[: len(prompt)]) == {IGNORE_INDEX}
    assert labels[len(prompt)] == ids[len(prompt)]


def test_the_critic_prompt_is_what_vllm_renders(tokenizer: Any) -> None:
    ids, labels = encode_example(tokenizer, ChatExample(DEBATE, train_on="final"), 4096)
    prompt = prompt_ids(tokenizer, DEBATE[:3])
    assert ids[: len(prompt)] == prompt
    assert labels[len(prompt) - 1] == IGNORE_INDEX and labels[len(prompt)] != IGNORE_INDEX


def test_multi_turn_labels_every_assistant_turn(tokenizer: Any) -> None:
    runs = decoded_runs(tokenizer, ChatExample(DEBATE))
    assert runs == [DEBATE[1]["content"] + END, DEBATE[3]["content"] + END]


def test_final_labels_only_the_last_assistant_turn(tokenizer: Any) -> None:
    runs = decoded_runs(tokenizer, ChatExample(DEBATE, train_on="final"))
    assert runs == [DEBATE[3]["content"] + END]


def test_final_and_all_share_the_same_tokens(tokenizer: Any) -> None:
    all_ids, _ = encode_example(tokenizer, ChatExample(DEBATE), max_seq_len=4096)
    final_ids, _ = encode_example(tokenizer, ChatExample(DEBATE, train_on="final"), 4096)
    assert all_ids == final_ids


def test_explicit_system_prompt_replaces_the_default(tokenizer: Any) -> None:
    messages = [{"role": "system", "content": "Be brief."}, user("1+1?"), assistant("\\boxed{2}")]
    ids, _ = encode_example(tokenizer, ChatExample(messages), max_seq_len=4096)
    assert "SmolLM" not in tokenizer.decode(ids)
    assert decoded_runs(tokenizer, ChatExample(messages)) == ["\\boxed{2}" + END]


def test_unicode_and_whitespace_survive(tokenizer: Any) -> None:
    text = "  Première étape : 3 × 4 = 12 ✓\n\n\\boxed{12}  "
    runs = decoded_runs(tokenizer, ChatExample([user("3×4?"), assistant(text)]))
    assert runs == [text + END]


def test_too_long_examples_raise(tokenizer: Any) -> None:
    example = ChatExample([user("word " * 200), assistant("ok")])
    with pytest.raises(ExampleTooLongError):
        encode_example(tokenizer, example, max_seq_len=64)


def test_example_without_assistant_turn_is_refused(tokenizer: Any) -> None:
    with pytest.raises(ValueError, match="no assistant"):
        encode_example(tokenizer, ChatExample([user("hello")]), max_seq_len=4096)


def test_padding_carries_no_loss(tokenizer: Any) -> None:
    from services.trainer.lora.batching import Encoded, collate

    short = Encoded(*encode_example(tokenizer, ChatExample([user("1+1?"), assistant("2")]), 4096))
    long = Encoded(*encode_example(tokenizer, ChatExample(DEBATE), 4096))
    batch = collate([short, long], pad_id=tokenizer.pad_token_id)
    n = len(short.input_ids)
    assert batch.input_ids.shape == (2, len(long.input_ids))
    assert batch.attention_mask[0, :n].all() and not batch.attention_mask[0, n:].any()
    assert set(batch.labels[0, n:].tolist()) == {IGNORE_INDEX}
    assert batch.tokens == n + len(long.input_ids)
    assert batch.loss_tokens == short.loss_tokens + long.loss_tokens
    assert batch.loss_tokens == int((batch.labels[:, 1:] != IGNORE_INDEX).sum())
