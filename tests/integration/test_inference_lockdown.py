"""Inference serves adapters from the store only, against a real vLLM server (issue 15):
no path outside the store, no folder symlinked in, no runtime loading, and clients trust a
listed adapter only when it came from the store."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from maft.exceptions import AdapterUntrustedError
from maft.inference_client import InferenceClient
from tests.fixtures.vllm import TEST_MAX_RANK, VllmServer, make_random_lora

pytestmark = pytest.mark.vllm


@pytest.fixture(scope="module")
def outside(vllm_tiny: VllmServer) -> Iterator[Path]:
    """A valid adapter for the server's model at <store>/../../elsewhere-15/x: what vLLM's
    filesystem resolver served for `model: "../../elsewhere-15/x"`."""
    folder = vllm_tiny.store.root.parent.parent / "elsewhere-15"
    shutil.rmtree(folder, ignore_errors=True)
    src = make_random_lora(vllm_tiny.model_dir, folder / "src", seed=15)
    vllm_tiny.store.publish(src, "itest-elsewhere", base_model_path=str(vllm_tiny.model_dir),
                            max_rank=TEST_MAX_RANK)  # a correct copy, then moved out
    (vllm_tiny.store.root / "itest-elsewhere").rename(folder / "x")
    yield folder / "x"
    shutil.rmtree(folder, ignore_errors=True)


def chat(server: VllmServer, model: str) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/chat/completions", timeout=120, json={
        "model": model, "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]})


def listed(server: VllmServer) -> dict[str, str]:
    """id -> root of every model vLLM serves now."""
    return {m["id"]: m["root"] for m in httpx.get(f"{server.url}/v1/models").json()["data"]}


def test_a_path_outside_the_store_is_not_served(vllm_tiny: VllmServer, outside: Path) -> None:
    for name in ("../../elsewhere-15/x", "../adapters/../../elsewhere-15/x"):
        response = chat(vllm_tiny, name)
        assert response.status_code == 404, response.text
        assert name not in listed(vllm_tiny)
    assert not any(str(outside) in root for root in listed(vllm_tiny).values())


def test_a_folder_symlinked_into_the_store_is_not_served(vllm_tiny: VllmServer,
                                                         outside: Path) -> None:
    link = vllm_tiny.store.root / "gen-97@v1"
    link.symlink_to(outside)
    try:
        assert chat(vllm_tiny, "gen-97@v1").status_code == 404
        assert "gen-97@v1" not in listed(vllm_tiny)
        assert "not a folder directly inside the store" in vllm_tiny.child.tail(200)
    finally:
        link.unlink()


def test_a_store_adapter_is_served_from_its_folder(vllm_tiny: VllmServer) -> None:
    assert chat(vllm_tiny, "gen-0@v1").status_code == 200
    assert listed(vllm_tiny)["gen-0@v1"] == str(vllm_tiny.store.root / "gen-0@v1")


def test_runtime_lora_loading_is_refused(vllm_tiny: VllmServer, outside: Path) -> None:
    load = httpx.post(f"{vllm_tiny.url}/v1/load_lora_adapter",
                      json={"lora_name": "gen-98@v1", "lora_path": str(outside)})
    assert load.status_code == 403, load.text
    sagemaker = httpx.post(f"{vllm_tiny.url}/adapters",
                           json={"name": "gen-96@v1", "src": str(outside)})
    assert sagemaker.status_code == 403, sagemaker.text
    unload = httpx.post(f"{vllm_tiny.url}/v1/unload_lora_adapter",
                        json={"lora_name": "gen-0@v1"})
    assert unload.status_code == 403, unload.text
    assert not {"gen-98@v1", "gen-96@v1"} & set(listed(vllm_tiny))


async def test_clients_trust_a_loaded_name_only_from_the_store(vllm_tiny: VllmServer,
                                                               tmp_path: Path) -> None:
    ours = InferenceClient(vllm_tiny.url, timeout=120, adapter_store=vllm_tiny.store.root)
    other = InferenceClient(vllm_tiny.url, timeout=120, adapter_store=tmp_path / "another")
    try:
        await ours.ensure_loadable("gen-1@v1")
        await ours.ensure_loadable(vllm_tiny.served_name)
        with pytest.raises(AdapterUntrustedError):  # listed, but not from that store
            await other.ensure_loadable("gen-1@v1")
    finally:
        await ours.aclose()
        await other.aclose()
