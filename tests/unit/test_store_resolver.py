"""Which adapter names resolve, to which folders: AdapterStore.servable and the vLLM resolver
plugin built on it (vLLM imported, no server started)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from maft.adapter_store import AdapterStore, is_store_name
from maft.exceptions import AdapterInvalidError
from tests.unit.test_adapter_store import BASE, publish, write_adapter

XP = re.compile(r"xp-[a-z0-9-]+")


@pytest.fixture
def store(tmp_path: Path) -> AdapterStore:
    """A store holding gen-0@v1 (and, outside it, a valid adapter at tmp/elsewhere/x)."""
    store = AdapterStore(tmp_path / "store")
    publish(store, write_adapter(tmp_path / "src"), "gen-0@v1")
    outside = write_adapter(tmp_path / "elsewhere" / "x", base_model_name_or_path=BASE)
    assert store.validate(outside, max_rank=16, base_model_path=BASE)  # servable, but elsewhere
    return store


def servable(store: AdapterStore, name: str, extra: re.Pattern[str] | None = None) -> Path:
    return store.servable(name, max_rank=16, base_model_path=BASE, extra_names=extra)


def test_only_the_stores_own_names(store: AdapterStore) -> None:
    assert servable(store, "gen-0@v1") == store.root / "gen-0@v1"
    for name in ("../elsewhere/x", "../../elsewhere/x", "/etc", "gen-0@v1/..", "gen-0@v1\n",
                 "..", ".tmp-gen-0@v1", "itest-late", "Gen-0@v1", ""):
        with pytest.raises(AdapterInvalidError, match="not a name of this adapter store"):
            servable(store, name)
    assert is_store_name("crit-12@v300") and not is_store_name("crit-1@v3/../x")


def test_an_extra_pattern_adds_names_but_never_paths(store: AdapterStore, tmp_path: Path) -> None:
    publish(store, write_adapter(tmp_path / "src2"), "xp-run1-maft-gen0-it1")
    assert servable(store, "xp-run1-maft-gen0-it1", XP).name == "xp-run1-maft-gen0-it1"
    anything = re.compile(r".*")
    for name in ("../elsewhere/x", "xp/../../x", ".hidden"):
        with pytest.raises(AdapterInvalidError):
            servable(store, name, anything)


def test_a_folder_symlinked_from_outside_is_refused(store: AdapterStore, tmp_path: Path) -> None:
    (store.root / "gen-5@v1").symlink_to(tmp_path / "elsewhere" / "x")
    with pytest.raises(AdapterInvalidError, match="not a folder directly inside the store"):
        servable(store, "gen-5@v1")
    nested = store.root / "gen-6@v1"
    nested.mkdir()
    (nested / "adapter_config.json").write_text(
        (store.root / "gen-0@v1" / "adapter_config.json").read_text())
    (nested / "adapter_model.safetensors").symlink_to(tmp_path / "elsewhere" / "x" /
                                                      "adapter_model.safetensors")
    with pytest.raises(AdapterInvalidError, match="resolve outside"):
        servable(store, "gen-6@v1")


def test_a_store_reached_through_a_symlink_still_serves(store: AdapterStore,
                                                        tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to(store.root)  # e.g. a volume mounted behind a symlink
    assert servable(AdapterStore(tmp_path / "link"), "gen-0@v1") == tmp_path / "link" / "gen-0@v1"


def test_missing_and_invalid_adapters_are_refused(store: AdapterStore, tmp_path: Path) -> None:
    with pytest.raises(AdapterInvalidError):
        servable(store, "gen-9@v9")  # absent
    write_adapter(store.root / "gen-1@v1", base_model_name_or_path="/other/model")
    with pytest.raises(AdapterInvalidError, match="base_model_name_or_path"):
        servable(store, "gen-1@v1")


async def test_the_vllm_resolver_serves_store_folders_only(store: AdapterStore) -> None:
    from vllm.lora.resolver import LoRAResolverRegistry

    from services.inference.store_resolver import RESOLVER_NAME, register
    from services.inference.store_resolver.resolver import StoreResolver

    resolver = StoreResolver(store.root, max_rank=16)
    found = await resolver.resolve_lora(BASE, "gen-0@v1")
    assert found is not None and found.lora_path == str(store.root / "gen-0@v1")
    assert found.lora_name == "gen-0@v1"
    assert await resolver.resolve_lora(BASE, "../elsewhere/x") is None
    assert await resolver.resolve_lora("/another/model", "gen-0@v1") is None
    register()
    register()  # idempotent: the entry point and vllm_entry both call it
    assert RESOLVER_NAME in LoRAResolverRegistry.get_supported_resolvers()
