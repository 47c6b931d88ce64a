"""Real PEFT training on the tiny random model: loss, saved adapter, parents, determinism."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from maft.adapter_store import AdapterStore, read_adapter_config
from services.trainer.lora.batching import plan_epoch, step_plan
from services.trainer.lora.loop import (
    ChatExample,
    LoraConfigSpec,
    TrainConfig,
    linear_schedule,
    total_steps,
    train_lora,
)
from tests.fixtures.vllm import TEST_MAX_RANK, make_random_lora

pytestmark = pytest.mark.training

QUESTIONS = [("What is 3 + 4?", "3 + 4 = 7. \\boxed{7}"),
             ("What is 5 * 6?", "5 * 6 = 30. \\boxed{30}"),
             ("What is 9 - 2?", "9 - 2 = 7. \\boxed{7}"),
             ("What is 8 / 2?", "8 / 2 = 4. \\boxed{4}")]
EXAMPLES = [ChatExample([{"role": "user", "content": q}, {"role": "assistant", "content": a}])
            for q, a in QUESTIONS] * 2


def config(**overrides: Any) -> TrainConfig:
    """Settings that learn visibly in a few steps of the tiny model; one batch is all data.
    fp32: the losses are compared with transformers' own in fp32 (bf16 base weights, "auto"
    on AVX-512 machines, move a loss by ~2e-4 relative)."""
    values: dict[str, Any] = {"lora": LoraConfigSpec(rank=8, alpha=16), "learning_rate": 1e-2,
                              "batch_size": 8, "max_steps": 6, "warmup_ratio": 0.0,
                              "dtype": "float32"}
    return TrainConfig(**{**values, **overrides})


def adapter_tensors(folder: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(folder / "adapter_model.safetensors")


def reference_loss(model_dir: Path, adapter: Path | None) -> float:
    """Token-weighted mean loss over EXAMPLES by transformers' own loss, for cross-checking."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from services.trainer.lora.loop import encode_example

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model: Any = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    if adapter is not None:
        model = PeftModel.from_pretrained(model, str(adapter))
    total = count = 0.0
    with torch.no_grad():
        for example in EXAMPLES:
            ids, labels = encode_example(tokenizer, example, 1024)
            n = sum(label != -100 for label in labels[1:])
            loss = model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels])).loss
            total, count = total + float(loss) * n, count + n
    return total / count


def test_loss_decreases_and_starts_at_the_base_models_loss(tiny_model_dir: Path,
                                                            tmp_path: Path) -> None:
    seen: list[tuple[int, int, float]] = []
    result = train_lora(base_model_path=tiny_model_dir, examples=EXAMPLES, out_dir=tmp_path / "a",
                        config=config(), progress=lambda *args: seen.append(args))
    assert [(step, total) for step, total, _ in seen] == [(i, 6) for i in range(1, 7)]
    assert result.steps == 6 and result.examples == 8 and result.dropped_too_long == 0
    assert result.first_loss == seen[0][2] and result.final_loss == seen[-1][2]
    # B = 0 at the start: the first loss is the base model's, as transformers computes it.
    assert result.first_loss == pytest.approx(reference_loss(tiny_model_dir, None), rel=1e-4)
    assert result.final_loss is not None and result.final_loss < result.first_loss - 0.5
    assert result.loss_tokens < result.train_tokens and result.tokens_per_s > 0


def test_output_is_a_servable_adapter(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "adapter"
    train_lora(base_model_path=tiny_model_dir, examples=EXAMPLES, out_dir=out,
               config=config(max_steps=1))
    adapter_config = AdapterStore(tmp_path / "store").validate(out, max_rank=TEST_MAX_RANK)
    assert adapter_config["r"] == 8 and not adapter_config.get("modules_to_save")
    tensors = adapter_tensors(out)
    assert len(tensors) == 2 * 4 * 2  # lora_A and lora_B of q/k/v/o in both layers
    assert all("lora_" in name and t.dtype.is_floating_point for name, t in tensors.items())
    assert {str(t.dtype) for t in tensors.values()} == {"torch.float32"}
    assert any(bool(t.abs().sum() > 0) for name, t in tensors.items() if "lora_B" in name)


def test_parent_adapter_is_the_starting_point_and_keeps_its_rank(tiny_model_dir: Path,
                                                                  tmp_path: Path) -> None:
    parent = make_random_lora(tiny_model_dir, tmp_path / "parent", seed=3, rank=4)
    out = tmp_path / "child"
    # Learning rate 0: the saved adapter must be exactly the parent; its loss, the parent's.
    result = train_lora(base_model_path=tiny_model_dir, examples=EXAMPLES, out_dir=out,
                        config=config(max_steps=1, learning_rate=0.0), parent_adapter=parent)
    assert read_adapter_config(out)["r"] == 4
    before, after = adapter_tensors(parent), adapter_tensors(out)
    assert before.keys() == after.keys()
    assert all(bool((before[name] == after[name]).all()) for name in before)
    assert result.first_loss == pytest.approx(reference_loss(tiny_model_dir, parent), rel=1e-4)


def test_same_seed_same_weights_other_seed_other_weights(tiny_model_dir: Path,
                                                         tmp_path: Path) -> None:
    runs = {}
    for name, seed in [("a", 7), ("b", 7), ("c", 8)]:
        train_lora(base_model_path=tiny_model_dir, examples=EXAMPLES, out_dir=tmp_path / name,
                   config=config(max_steps=2, seed=seed, batch_size=2, grad_accum=2))
        runs[name] = adapter_tensors(tmp_path / name)
    assert all(bool((runs["a"][k] == runs["b"][k]).all()) for k in runs["a"])
    assert not all(bool((runs["a"][k] == runs["c"][k]).all()) for k in runs["a"])


def test_too_long_examples_are_dropped_and_counted(tiny_model_dir: Path, tmp_path: Path) -> None:
    long = ChatExample([{"role": "user", "content": "number " * 300},
                        {"role": "assistant", "content": "ok"}])
    result = train_lora(base_model_path=tiny_model_dir, examples=[*EXAMPLES, long],
                        out_dir=tmp_path / "a", config=config(max_steps=1, max_seq_len=128))
    assert result.examples == 8 and result.dropped_too_long == 1
    with pytest.raises(ValueError, match="no example"):
        train_lora(base_model_path=tiny_model_dir, examples=[long], out_dir=tmp_path / "b",
                   config=config(max_steps=1, max_seq_len=128))


def test_batches_are_length_grouped_seeded_and_cover_every_example() -> None:
    rng = random.Random(0)
    lengths = [rng.randint(50, 400) for _ in range(37)]
    batches = plan_epoch(lengths, 4, random.Random(1))
    assert sorted(i for b in batches for i in b) == list(range(37))

    def padding(batches: list[list[int]]) -> int:
        return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b)
                   for b in batches)

    unsorted = [list(range(i, min(i + 4, 37))) for i in range(0, 37, 4)]
    assert padding(batches) < padding(unsorted) / 4
    plan = list(step_plan(lengths, batch_size=4, grad_accum=3, seed=5, total_steps=9))
    assert len(plan) == 9 and [len(step) for step in plan[:4]] == [3, 3, 3, 1]  # 10 batches
    assert plan == list(step_plan(lengths, batch_size=4, grad_accum=3, seed=5, total_steps=9))
    assert plan[:4] != plan[4:8]  # the second epoch is shuffled anew


def test_schedule_warms_up_then_decays_without_zero_steps() -> None:
    factor = linear_schedule(10, 2)
    values = [factor(step) for step in range(10)]
    assert values[:3] == [1 / 3, 2 / 3, 1.0]
    assert values == sorted(values[:3]) + sorted(values[3:], reverse=True)
    assert min(values) > 0


def test_min_steps_repeats_epochs_up_to_the_cap_and_records_each_epochs_loss(
        tiny_model_dir: Path, tmp_path: Path) -> None:
    # 8 examples at batch 4: 2 steps an epoch; min_steps 7 -> 4 epochs (8 steps); cap 3 -> 6.
    base = {"batch_size": 4, "max_steps": None, "epochs": 1}
    assert total_steps(config(**base, min_steps=7), 8) == 8
    assert total_steps(config(**base, min_steps=7, max_epochs=3), 8) == 6
    assert total_steps(config(**base), 8) == 2 and total_steps(config(max_steps=5), 8) == 5
    result = train_lora(base_model_path=tiny_model_dir, examples=EXAMPLES, out_dir=tmp_path / "a",
                        config=config(**base, min_steps=7))
    assert result.steps == 8 and len(result.epoch_losses) == 4
    assert result.epoch_losses[-1] < result.epoch_losses[0] - 0.5  # it learns across repeats
    with pytest.raises(ValueError, match="max_epochs"):
        config(epochs=3, max_epochs=2)
