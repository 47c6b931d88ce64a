"""The dense CPU multi-LoRA op against vLLM's stock CPU op and a per-token reference.

Random weights at SmolLM2's shapes (hidden 576, q/k/v 576/192/192, o 576), vLLM's layout (slots
padded to max_lora_rank with zeros), decode batches (one token per request) and prefill batches
(runs of one request's tokens), adapters of different ranks and base-model tokens (slot -1).
"""

from __future__ import annotations

import importlib.metadata
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("vllm")

import torch
from vllm.lora.layers import LoRAMapping
from vllm.lora.punica_wrapper.punica_cpu import PunicaWrapperCPU

from services.inference import cpu_lora
from services.inference.cpu_lora.dense import effective_rank, expand_rank, slot_mask
from services.inference.cpu_lora.wrapper import PunicaWrapperDenseCPU

SLOTS, MAX_RANK, HIDDEN, VOCAB = 8, 16, 576, 49152
QKV_PROJ, O_PROJ = (576, 192, 192), (576,)


def stacked(slices: tuple[int, ...], ranks: list[int], dtype: torch.dtype, seed: int = 0
            ) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    """vLLM's stacked A (slots, 1, max_rank, in) and B (slots, 1, out, max_rank) per slice;
    slot i holds an adapter of rank ranks[i], the other slots are zero."""
    gen = torch.Generator().manual_seed(seed)
    a = tuple(torch.zeros(SLOTS, 1, MAX_RANK, HIDDEN, dtype=dtype) for _ in slices)
    b = tuple(torch.zeros(SLOTS, 1, size, MAX_RANK, dtype=dtype) for size in slices)
    for slot, rank in enumerate(ranks):
        for t in a:
            t[slot, 0, :rank] = torch.randn(rank, HIDDEN, generator=gen) * 0.1
        for t in b:
            t[slot, 0, :, :rank] = torch.randn(t.shape[2], rank, generator=gen) * 0.1
    return a, b


def token_ids(requests: list[int], tokens_each: int) -> list[int]:
    """vLLM's token -> LoRA id mapping for consecutive requests (id 0: the base model)."""
    return [lora_id for lora_id in requests for _ in range(tokens_each)]


def mapped(cls: type[PunicaWrapperCPU], ids: list[int], active: int,
           wrapper: PunicaWrapperCPU | None = None) -> PunicaWrapperCPU:
    """A `cls` wrapper after vLLM's per-step update for the mapping `ids` (token -> LoRA id;
    here also request -> LoRA id); LoRA id i + 1 lives in slot i."""
    wrapper = wrapper or cls(4096, 4096, "cpu")
    slot_ids: list[int | None] = [i + 1 for i in range(active)] + [None] * (SLOTS - active)
    # CPU model runners always pass is_prefill=True (vllm's lora_model_runner_mixin).
    wrapper.update_metadata(LoRAMapping(tuple(ids), tuple(ids), is_prefill=True), slot_ids,
                            SLOTS + 1, VOCAB)
    return wrapper


def run(cls: type[PunicaWrapperCPU], ids: list[int], active: int, y: torch.Tensor,
        x: torch.Tensor, a: tuple[torch.Tensor, ...], b: tuple[torch.Tensor, ...],
        slices: tuple[int, ...], wrapper: PunicaWrapperCPU | None = None) -> torch.Tensor:
    """y + the LoRA delta by `cls`'s add_lora_linear."""
    out = y.clone()
    mapped(cls, ids, active, wrapper).add_lora_linear(out, x, a, b, 1.0, slices)
    return out


def reference(ids: list[int], y: torch.Tensor, x: torch.Tensor, a: tuple[torch.Tensor, ...],
              b: tuple[torch.Tensor, ...], slices: tuple[int, ...]) -> torch.Tensor:
    """Per-token LoRA in float64: y_t[slice i] += B_i[s] A_i[s] x_t for the token's slot s."""
    out = y.double().clone()
    for t, lora_id in enumerate(ids):
        if lora_id == 0:
            continue
        offset = 0
        for i, size in enumerate(slices):
            delta = b[i][lora_id - 1, 0].double() @ (a[i][lora_id - 1, 0].double() @ x[t].double())
            out[t, offset:offset + size] += delta
            offset += size
    return out


CASES = {  # name: the batch's token -> LoRA id mapping
    "decode-base": token_ids([0] * 8, 1),
    "decode-1-adapter": token_ids([1] * 8, 1),
    "decode-6-mixed": token_ids([1, 2, 3, 4, 5, 6, 1, 2, 3, 4, 5, 6], 1),
    "decode-6-mixed-with-base": token_ids([3, 0, 1, 6, 0, 2, 5, 4, 0, 1, 6, 3], 1),
    "prefill-1-adapter": token_ids([1], 300),
    "prefill-6-mixed-with-base": token_ids([2, 0, 5, 1, 6, 3, 4], 97),
    # a long prompt's chunk scheduled with other requests' decode tokens
    "prefill-and-decode": [4, 0, 6, 2, *token_ids([5], 250), 1, 0, 3],
}
RANKS = [8, 16, 1, 4, 8, 12]  # different ranks, up to max_lora_rank


@pytest.mark.parametrize("slices", [QKV_PROJ, O_PROJ], ids=["qkv", "o"])
@pytest.mark.parametrize("case", list(CASES))
def test_fp32_matches_stock_op_and_reference(case: str, slices: tuple[int, ...]) -> None:
    ids = CASES[case]
    a, b = stacked(slices, RANKS, torch.float32)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(len(ids), HIDDEN, generator=gen)
    y = torch.randn(len(ids), sum(slices), generator=gen)
    ours = run(PunicaWrapperDenseCPU, ids, len(RANKS), y, x, a, b, slices)
    stock = run(PunicaWrapperCPU, ids, len(RANKS), y, x, a, b, slices)
    torch.testing.assert_close(ours, stock, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours.double(), reference(ids, y, x, a, b, slices),
                               rtol=1e-5, atol=1e-5)
    base_rows = torch.tensor(ids) == 0
    assert torch.equal(ours[base_rows], y[base_rows])  # base tokens: bit for bit untouched


@pytest.mark.parametrize("case", ["decode-6-mixed-with-base", "prefill-6-mixed-with-base"])
def test_bf16_within_tolerance_of_stock(case: str) -> None:
    ids = CASES[case]
    a, b = stacked(QKV_PROJ, RANKS, torch.bfloat16)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(len(ids), HIDDEN, generator=gen).to(torch.bfloat16)
    y = torch.randn(len(ids), sum(QKV_PROJ), generator=gen).to(torch.bfloat16)
    ours = run(PunicaWrapperDenseCPU, ids, len(RANKS), y, x, a, b, QKV_PROJ)
    stock = run(PunicaWrapperCPU, ids, len(RANKS), y, x, a, b, QKV_PROJ)
    torch.testing.assert_close(ours, stock, rtol=1.6e-2, atol=2e-2)  # bf16: ~1 ulp
    torch.testing.assert_close(ours.double(), reference(ids, y, x, a, b, QKV_PROJ),
                               rtol=1.6e-2, atol=2e-2)


def test_base_tokens_untouched_when_every_slot_is_full() -> None:
    """All max_loras slots loaded and base requests in the batch: slot -1 means no LoRA.

    (vLLM's stock CPU op indexes its weights with -1, i.e. the last slot, so there the base
    tokens would get that adapter's delta; ours follows the documented meaning of -1.)
    """
    ids = token_ids([0, 8, 0, 3], 2)
    a, b = stacked(O_PROJ, [8] * SLOTS, torch.float32)
    x, y = torch.randn(len(ids), HIDDEN), torch.randn(len(ids), sum(O_PROJ))
    ours = run(PunicaWrapperDenseCPU, ids, SLOTS, y, x, a, b, O_PROJ)
    torch.testing.assert_close(ours.double(), reference(ids, y, x, a, b, O_PROJ),
                               rtol=1e-5, atol=1e-5)


def test_repacks_after_a_slot_is_rewritten() -> None:
    """vLLM writes a new adapter into a slot in place: the cached packing must follow."""
    ids = token_ids([1, 2], 3)
    a, b = stacked(QKV_PROJ, [8, 8], torch.float32)
    x, y = torch.randn(len(ids), HIDDEN), torch.randn(len(ids), sum(QKV_PROJ))
    wrapper = PunicaWrapperDenseCPU(4096, 4096, "cpu")
    run(PunicaWrapperDenseCPU, ids, 2, y, x, a, b, QKV_PROJ, wrapper)
    with torch.inference_mode():  # as vLLM's set_lora: zero the slot, copy the new weights
        for t in a:
            t[1] = 0
            t[1, 0, :16].copy_(torch.randn(16, HIDDEN) * 0.1)
        for t in b:
            t[1] = 0
            t[1, 0, :, :16].copy_(torch.randn(t.shape[2], 16) * 0.1)
    again = run(PunicaWrapperDenseCPU, ids, 2, y, x, a, b, QKV_PROJ, wrapper)
    torch.testing.assert_close(again.double(), reference(ids, y, x, a, b, QKV_PROJ),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cls", [PunicaWrapperDenseCPU, PunicaWrapperCPU])
def test_logits_lora_per_request(cls: type[PunicaWrapperCPU]) -> None:
    """lm_head LoRA on the logits rows (one per request), ours and stock vs the reference."""
    ids, vocab = [3, 0, 1, 6, 2, 0, 5], 1000
    a, b = stacked((vocab,), RANKS, torch.float32)
    x, y = torch.randn(len(ids), HIDDEN), torch.randn(len(ids), vocab)
    out = y.clone()
    mapped(cls, ids, len(RANKS)).add_lora_logits(out, x, a[0], b[0], 1.0)
    torch.testing.assert_close(out.double(), reference(ids, y, x, a, b, (vocab,)),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cls", [PunicaWrapperDenseCPU, PunicaWrapperCPU])
@pytest.mark.parametrize("case", ["decode-6-mixed-with-base", "prefill-and-decode"])
def test_embedding_lora_expand(cls: type[PunicaWrapperCPU], case: str) -> None:
    """Embedding LoRA: x holds each token's looked-up A row (max_rank wide), y += B[slot] x."""
    ids = CASES[case]
    _, b = stacked((HIDDEN,), RANKS, torch.float32)
    x, y = torch.randn(len(ids), MAX_RANK), torch.randn(len(ids), HIDDEN)
    out = y.clone()
    mapped(cls, ids, len(RANKS)).add_lora_embedding(out, x, b[0])
    expected = y.double().clone()
    for t, lora_id in enumerate(ids):
        if lora_id:
            expected[t] += b[0][lora_id - 1, 0].double() @ x[t].double()
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-5)


def test_unused_layers_cost_nothing() -> None:
    """vLLM wraps every supported module (MLP, lm_head, embeddings) whether adapters target it
    or not: all-zero weights must leave y bit for bit as it was."""
    ids = CASES["decode-6-mixed-with-base"]
    a, b = stacked(QKV_PROJ, [], torch.float32)
    x, y = torch.randn(len(ids), HIDDEN), torch.randn(len(ids), sum(QKV_PROJ))
    assert torch.equal(run(PunicaWrapperDenseCPU, ids, 6, y, x, a, b, QKV_PROJ), y)


def test_custom_op_path_matches_eager() -> None:
    """With compile kept on, the wrapper calls the same math through torch custom ops."""
    ids = CASES["prefill-and-decode"]
    a, b = stacked(QKV_PROJ, RANKS, torch.float32)
    x, y = torch.randn(len(ids), HIDDEN), torch.randn(len(ids), sum(QKV_PROJ))
    compiled = mapped(PunicaWrapperDenseCPU, ids, len(RANKS))
    compiled.compiled = True  # type: ignore[attr-defined]
    ours = run(PunicaWrapperDenseCPU, ids, len(RANKS), y, x, a, b, QKV_PROJ, compiled)
    eager = run(PunicaWrapperDenseCPU, ids, len(RANKS), y, x, a, b, QKV_PROJ)
    assert torch.equal(ours, eager)


def test_torch_compile_neither_skips_nor_freezes_the_lora_math(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Compiled once, the layer must follow later batches' mappings and sizes without a
    recompile (vLLM's CPU compile traces once and drops guards): all-base first, then mixed."""
    import torch._dynamo

    monkeypatch.setattr(torch._dynamo.config, "error_on_recompile", True)
    torch._dynamo.reset()
    a, b = stacked(O_PROJ, RANKS, torch.float32)
    wrapper = PunicaWrapperDenseCPU(4096, 4096, "cpu")
    wrapper.compiled = True

    @torch.compile(backend="aot_eager", dynamic=True, fullgraph=True)
    def layer(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        wrapper.add_lora_linear(y, x, a, b, 1.0, O_PROJ)
        return y

    for ids in (token_ids([0] * 5, 1), CASES["decode-6-mixed-with-base"],
                CASES["prefill-and-decode"]):
        mapped(PunicaWrapperDenseCPU, ids, len(RANKS), wrapper)
        x, y = torch.randn(len(ids), HIDDEN), torch.randn(len(ids), sum(O_PROJ))
        out = layer(y.clone(), x)
        torch.testing.assert_close(out.double(), reference(ids, y, x, a, b, O_PROJ),
                                   rtol=1e-5, atol=1e-5)
    torch._dynamo.reset()


def test_keep_compile_hides_lora_from_the_platform_check() -> None:
    """The CPU platform turns compile off when LoRA is on; the patch keeps its other work."""

    class Platform:
        @classmethod
        def check_and_update_config(cls, config: Any) -> None:
            config.mode = "none" if config.lora_config is not None else "compile"

    config = SimpleNamespace(lora_config="lora", mode=None)
    cpu_lora._keep_compile(Platform)
    Platform.check_and_update_config(config)
    assert config.mode == "compile" and config.lora_config == "lora"


def test_slot_mask_and_effective_rank() -> None:
    mask = slot_mask(torch.tensor([2, -1, 0, 2]), 5, torch.float32)
    assert mask.shape == (5, 3)  # highest slot used + 1; the 5th token has no mapping
    assert mask.tolist() == [[0, 0, 1], [0, 0, 0], [1, 0, 0], [0, 0, 1], [0, 0, 0]]
    assert slot_mask(torch.tensor([-1, -1]), 2, torch.float32).shape == (2, 0)
    a, _ = stacked(QKV_PROJ, [3, 12, 5], torch.float32)
    assert effective_rank(a) == 12
    assert effective_rank(stacked(O_PROJ, [], torch.float32)[0]) == 0
    assert expand_rank(stacked(O_PROJ, [3, 12, 5], torch.float32)[1][0]) == 12


@pytest.fixture
def cpu_platform_class(monkeypatch: pytest.MonkeyPatch) -> type:
    """vLLM's platform class, restored after the test (register() patches it)."""
    from vllm.platforms import current_platform

    cls = type(current_platform)
    monkeypatch.setattr(cls, "get_punica_wrapper", cls.__dict__["get_punica_wrapper"])
    monkeypatch.setattr(cls, "_maft_cpu_lora", False, raising=False)
    return cls


def test_register_swaps_the_cpu_wrapper_only_on_cpu(cpu_platform_class: type,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from vllm.lora.punica_wrapper import get_punica_wrapper
    from vllm.platforms import current_platform

    stock = current_platform.get_punica_wrapper()
    monkeypatch.setattr(cpu_platform_class, "is_cpu", lambda self: False)
    cpu_lora.register()
    assert current_platform.get_punica_wrapper() == stock  # another platform: untouched
    monkeypatch.setattr(cpu_platform_class, "is_cpu", lambda self: True)
    cpu_lora.register()
    cpu_lora.register()  # vLLM may load plugins twice
    assert current_platform.get_punica_wrapper() == cpu_lora.WRAPPER_QUALNAME
    assert isinstance(get_punica_wrapper(64, 4, "cpu"), PunicaWrapperDenseCPU)


def test_entry_point_is_registered() -> None:
    plugins = {ep.name: ep.value
               for ep in importlib.metadata.entry_points(group="vllm.general_plugins")}
    assert plugins.get(cpu_lora.PLUGIN_NAME) == "services.inference.cpu_lora:register"
