"""maft's CPU LoRA kernel in real vLLM servers: the same greedy tokens as vLLM's stock CPU path
and as transformers + PEFT, in fp32; and the server says which kernel it runs.

For each model, one server with the plugin (the launcher's default on CPU), then one with
MAFT_CPU_LORA_KERNEL=stock (never two at once), then PEFT in this process; on the tiny model
also one with torch.compile kept on (MAFT_CPU_LORA_COMPILE=1, experimental). Requests of a case
are sent together so they share batches: base-model requests, one adapter, six adapters of
different ranks (up to max_lora_rank) mixed with base requests, and long critic-like prompts
(prefill, chunked) mixed with short ones. Every response is exactly MAX_TOKENS tokens
(ignore_eos) and compared as token ids.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.inference.cpu_lora import ACTIVE_LOG_LINE
from tests.fixtures.vllm import TEST_MAX_RANK, launch_vllm, make_random_lora

pytestmark = pytest.mark.vllm

RANKS = (8, 16, 4, 8, 1, 12)  # six adapters; 16 = the test servers' max_lora_rank
assert max(RANKS) == TEST_MAX_RANK
MAX_TOKENS = 16
BASE = None  # a request to the base model
QUESTIONS = ["What is 12+7?", "Name a colour.", "A farmer has 17 cows and buys 3 times as "
             "many sheep. How many animals does he have?", "What is 6*8? Answer briefly."]
CRITIQUE = ("Agent {i} answered: the farmer has 17 cows and 3 times as many sheep, 51 sheep, "
            "so 68 animals in total. Answer: 68. ")

Request = tuple[str | None, list[int]]  # (adapter name or BASE, prompt token ids)


@dataclass
class Outputs:
    """Greedy token ids per case (one list per request, in request order) and the server log."""

    tokens: dict[str, list[list[int]]]
    log: str = ""


def adapter_names() -> list[str]:
    """The six adapters' lora_names (rank in the name)."""
    return [f"itest-cpu-lora-{i}-r{rank}" for i, rank in enumerate(RANKS)]


def chat_ids(tokenizer: Any, content: str) -> list[int]:
    """The chat-templated generation prompt of one user message, as token ids."""
    ids = tokenizer.apply_chat_template([{"role": "user", "content": content}],
                                        add_generation_prompt=True, return_dict=True)
    return list(ids["input_ids"])


def cases(model_dir: Path, long_repeats: int) -> dict[str, list[Request]]:
    """The requests of each case (sent concurrently within a case)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    short = [chat_ids(tokenizer, q) for q in QUESTIONS]
    debate = "".join(CRITIQUE.format(i=i) for i in range(long_repeats))
    long = [chat_ids(tokenizer, f"{debate}Question {i}: {QUESTIONS[2]} Critique and answer.")
            for i in range(3)]
    names = adapter_names()
    return {
        "base": [(BASE, p) for p in short],
        "one-adapter": [(names[0], p) for p in short],
        "six-mixed": [*((n, short[i % len(short)]) for i, n in enumerate(names)),
                      (BASE, short[1]), (names[5], short[0])],
        "long-prefill-mixed": [(names[1], long[0]), (BASE, long[1]), (names[5], long[2]),
                               (names[2], short[0]), (names[4], short[3])],
    }


def publish_adapters(model_dir: Path, root: Path, b_std: float) -> Path:
    """The six random adapters (PEFT format) in a fresh adapter store under `root`."""
    from maft.adapter_store import AdapterStore

    store = AdapterStore(root / "adapters")
    for seed, (name, rank) in enumerate(zip(adapter_names(), RANKS, strict=True), start=11):
        src = make_random_lora(model_dir, root / f"src-{name}", seed=seed, rank=rank,
                               b_std=b_std)
        store.publish(src, name, base_model_path=str(model_dir), max_rank=TEST_MAX_RANK)
    return store.root


async def _complete(http: httpx.AsyncClient, model: str, prompt: list[int]) -> list[int]:
    body = {"model": model, "prompt": prompt, "max_tokens": MAX_TOKENS, "temperature": 0.0,
            "ignore_eos": True, "return_token_ids": True}
    response = await http.post("/v1/completions", json=body)
    response.raise_for_status()
    return list(response.json()["choices"][0]["token_ids"])


async def _serve_cases(url: str, base_name: str,
                       requests: dict[str, list[Request]]) -> dict[str, list[list[int]]]:
    async with httpx.AsyncClient(base_url=url, timeout=600) as http:
        out = {}
        for case, reqs in requests.items():
            out[case] = list(await asyncio.gather(
                *(_complete(http, name or base_name, prompt) for name, prompt in reqs)))
        return out


KERNELS = {"dense": {"MAFT_CPU_LORA_KERNEL": "dense"},
           "stock": {"MAFT_CPU_LORA_KERNEL": "stock"},
           "dense+compile": {"MAFT_CPU_LORA_KERNEL": "dense", "MAFT_CPU_LORA_COMPILE": "1"}}


def served(model_dir: Path, store: Path, requests: dict[str, list[Request]], kernel: str,
           served_name: str) -> Outputs:
    """Start a fp32 server with `kernel`, run every case, stop it; its outputs and log."""
    server = launch_vllm(model_dir, store, served_name=served_name,
                         extra_env={"MAFT_DTYPE": "float32", **KERNELS[kernel]})
    try:
        server.wait_healthy()
        tokens = asyncio.run(_serve_cases(server.url, served_name, requests))
    finally:
        server.stop()
    return Outputs(tokens, server.log_path.read_text(errors="replace"))


def peft_outputs(model_dir: Path, store: Path, requests: dict[str, list[Request]]) -> Outputs:
    """The same greedy continuations from transformers + PEFT (fp32, one request at a time)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    names = adapter_names()
    model = PeftModel.from_pretrained(base, store / names[0], adapter_name=names[0])
    for name in names[1:]:
        model.load_adapter(str(store / name), adapter_name=name)
    model.eval()
    out: dict[str, list[list[int]]] = {}
    for case, reqs in requests.items():
        out[case] = []
        for adapter, prompt in reqs:
            if adapter is BASE:
                with model.disable_adapter():
                    out[case].append(_greedy(model, prompt))
            else:
                model.set_adapter(adapter)
                out[case].append(_greedy(model, prompt))
    return Outputs(out)


def _greedy(model: Any, prompt: list[int]) -> list[int]:
    """MAX_TOKENS argmax tokens with the KV cache, EOS not special (as vLLM's ignore_eos)."""
    import torch

    tokens: list[int] = []
    with torch.no_grad():
        step = model(torch.tensor([prompt]), use_cache=True)
        for _ in range(MAX_TOKENS):
            tokens.append(int(step.logits[0, -1].argmax()))
            step = model(torch.tensor([[tokens[-1]]]), past_key_values=step.past_key_values,
                         use_cache=True)
    return tokens


def collect(model_dir: Path, root: Path, *, served_name: str, long_repeats: int,
            b_std: float, kernels: tuple[str, ...] = ("dense", "stock")) -> dict[str, Outputs]:
    """Outputs of a server per kernel (one after the other) and of PEFT, same requests."""
    store = publish_adapters(model_dir, root, b_std)
    requests = cases(model_dir, long_repeats)
    runs = {k: served(model_dir, store, requests, k, served_name) for k in kernels}
    return runs | {"peft": peft_outputs(model_dir, store, requests)}


@pytest.fixture(scope="module")
def tiny_runs(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[dict[str, Outputs]]:
    """Dense, stock, dense with torch.compile, and PEFT outputs on the tiny model (long prompts
    ~1000 tokens)."""
    yield collect(tiny_model_dir, tmp_path_factory.mktemp("cpu-lora-tiny"),
                  served_name="tiny-base", long_repeats=30, b_std=0.2,
                  kernels=("dense", "stock", "dense+compile"))


@pytest.fixture(scope="module")
def smollm2_runs(smollm2_dir: Path, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[dict[str, Outputs]]:
    """The same on the real SmolLM2-135M-Instruct (gentler adapters: b_std 0.1)."""
    yield collect(smollm2_dir, tmp_path_factory.mktemp("cpu-lora-smollm2"),
                  served_name="SmolLM2-135M-Instruct", long_repeats=20, b_std=0.1)


def check_identical(runs: dict[str, Outputs], *, min_changed: int) -> None:
    """dense == stock == PEFT for every case, and adapters do change the outputs (at least
    `min_changed` of the six on their question in six-mixed), so the comparison has teeth."""
    dense, stock, peft = (runs[k].tokens for k in ("dense", "stock", "peft"))
    for case in dense:
        assert dense[case] == stock[case], f"{case}: dense kernel != vLLM's stock CPU path"
        assert dense[case] == peft[case], f"{case}: dense kernel != transformers + PEFT"
    base = dense["base"]  # one per question; six-mixed asks question i % 4 of adapter i
    changed = [dense["six-mixed"][i] != base[i % len(base)] for i in range(len(RANKS))]
    assert sum(changed) >= min_changed, f"adapters that changed the base output: {changed}"
    assert dense["one-adapter"] != base


def test_tiny_greedy_tokens_match_stock_path_and_peft(tiny_runs: dict[str, Outputs]) -> None:
    check_identical(tiny_runs, min_changed=6)


def test_compiled_dense_kernel_gives_the_same_tokens(tiny_runs: dict[str, Outputs]) -> None:
    """MAFT_CPU_LORA_COMPILE=1 (experimental): torch.compile on, LoRA math neither skipped nor
    frozen to the warm-up's batch: the same greedy tokens as the eager path and PEFT."""
    compiled = tiny_runs["dense+compile"]
    assert "torch.compile kept on" in compiled.log
    assert "CompilationMode.DYNAMO_TRACE_ONCE" in compiled.log
    assert compiled.tokens == tiny_runs["dense"].tokens == tiny_runs["peft"].tokens


def test_server_reports_the_dense_kernel(tiny_runs: dict[str, Outputs]) -> None:
    """A CPU server must not silently fall back to vLLM's stock per-token LoRA op."""
    dense, stock = tiny_runs["dense"].log, tiny_runs["stock"].log
    assert "Using PunicaWrapperDenseCPU." in dense and ACTIVE_LOG_LINE in dense
    assert "Using PunicaWrapperCPU." not in dense
    assert "Using PunicaWrapperCPU." in stock and ACTIVE_LOG_LINE not in stock


@pytest.mark.smollm2
def test_smollm2_greedy_tokens_match_stock_path_and_peft(
        smollm2_runs: dict[str, Outputs]) -> None:
    check_identical(smollm2_runs, min_changed=5)
