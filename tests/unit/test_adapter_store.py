"""The adapter store: names, validation, atomic publication, no reuse (no torch needed)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from maft.adapter_store import (
    AdapterStore,
    LoraName,
    lora_name_for,
    normalized_model_path,
    parse_lora_name,
)
from maft.exceptions import AdapterExistsError, AdapterInvalidError, MaftError

BASE = "/models/base"


def write_adapter(folder: Path, *, weights: str | None = "adapter_model.safetensors",
                  payload: bytes = b"weights", **overrides: Any) -> Path:
    """A hand-written PEFT adapter folder: config + dummy weights (+ noise vLLM ignores)."""
    config = {"peft_type": "LORA", "r": 8, "lora_alpha": 16, "bias": "none",
              "target_modules": ["q_proj", "v_proj"], "modules_to_save": None,
              "base_model_name_or_path": "/trainer/local/copy", **overrides}
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps(config))
    if weights:
        (folder / weights).write_bytes(payload)
    (folder / "README.md").write_text("model card")
    (folder / "checkpoint-10").mkdir()  # trainer leftovers: never published
    return folder


@pytest.fixture
def store(tmp_path: Path) -> AdapterStore:
    return AdapterStore(tmp_path / "store")


def publish(store: AdapterStore, src: Path, name: str, **kw: Any) -> Path:
    return store.publish(src, name, base_model_path=kw.get("base", BASE),
                         max_rank=kw.get("max_rank", 16))


def test_names_round_trip() -> None:
    assert lora_name_for("generator", 0, 3) == "gen-0@v3"
    assert lora_name_for("critic", 2, 3) == "crit-2@v3"
    assert parse_lora_name("crit-2@v3") == LoraName("critic", 2, 3)
    for bad in ("gen-0", "gen-x@v1", "judge-0@v1", "../gen-0@v1"):
        with pytest.raises(ValueError):
            parse_lora_name(bad)
    with pytest.raises(ValueError):
        lora_name_for("judge", 0, 1)


def test_normalized_model_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    assert normalized_model_path("/a/b/") == "/a/b"
    assert normalized_model_path(Path("/a//b/./c")) == "/a/b/c"
    assert normalized_model_path("rel/m") == str(tmp_path / "rel" / "m")


def test_publish_rewrites_base_and_copies_flat(store: AdapterStore, tmp_path: Path) -> None:
    src = write_adapter(tmp_path / "src")
    dest = publish(store, src, "gen-0@v1", base="/models/base/")
    config = json.loads((dest / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "/models/base"  # normalised
    assert sorted(p.name for p in dest.iterdir()) == [
        "README.md", "adapter_config.json", "adapter_model.safetensors"]
    assert store.names() == ["gen-0@v1"] and store.exists("gen-0@v1")
    store.validate("gen-0@v1", max_rank=16, base_model_path="/models/base")
    # the source is left untouched
    assert json.loads((src / "adapter_config.json").read_text())[
        "base_model_name_or_path"] == "/trainer/local/copy"


def test_publish_never_reuses_a_name(store: AdapterStore, tmp_path: Path) -> None:
    publish(store, write_adapter(tmp_path / "a"), "gen-0@v1")
    with pytest.raises(AdapterExistsError):
        publish(store, write_adapter(tmp_path / "b", payload=b"other"), "gen-0@v1")
    assert (store.path("gen-0@v1") / "adapter_model.safetensors").read_bytes() == b"weights"
    assert [p.name for p in store.root.iterdir()] == ["gen-0@v1"]  # no temp folder left


def test_publish_if_absent_is_idempotent_for_identical(store: AdapterStore,
                                                       tmp_path: Path) -> None:
    src = write_adapter(tmp_path / "a")
    first = store.publish_if_absent(src, "crit-1@v2", base_model_path=BASE, max_rank=16)
    again = store.publish_if_absent(src, "crit-1@v2", base_model_path=BASE, max_rank=16)
    assert again == first
    other = write_adapter(tmp_path / "b", payload=b"different")
    with pytest.raises(AdapterExistsError, match="different"):
        store.publish_if_absent(other, "crit-1@v2", base_model_path=BASE, max_rank=16)
    assert store.names() == ["crit-1@v2"]


def test_lost_rename_race_is_exists_error(store: AdapterStore, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A concurrent publisher renamed first: ours fails cleanly and leaves no temp folder."""
    src = write_adapter(tmp_path / "a")
    real_rename = os.rename

    def racing_rename(a: str | Path, b: str | Path) -> None:
        write_adapter(Path(b))  # the winner lands between our check and our rename
        real_rename(a, b)

    monkeypatch.setattr(os, "rename", racing_rename)
    with pytest.raises(AdapterExistsError):
        publish(store, src, "gen-0@v1")
    assert store.names() == ["gen-0@v1"]
    assert not [p for p in store.root.iterdir() if p.name.startswith(".")]


def test_temp_folders_are_hidden(store: AdapterStore, tmp_path: Path) -> None:
    (store.root / ".tmp-gen-0@v1-123").mkdir(parents=True)
    assert store.names() == []
    assert AdapterStore(tmp_path / "missing").names() == []


@pytest.mark.parametrize(("overrides", "reason"), [
    ({"peft_type": "IA3"}, "peft_type"),
    ({"r": 32}, "exceeds the server's max_lora_rank 16"),
    ({"rank_pattern": {"q_proj": 64}}, "exceeds"),
    ({"r": 0}, "positive"),
    ({"modules_to_save": ["lm_head"]}, "modules_to_save"),
    ({"use_dora": True}, "DoRA"),
])
def test_validate_refuses_unservable(store: AdapterStore, tmp_path: Path,
                                     overrides: dict[str, Any], reason: str) -> None:
    src = write_adapter(tmp_path / "src", **overrides)
    with pytest.raises(AdapterInvalidError, match=reason):
        publish(store, src, "gen-0@v1")
    assert not store.root.exists() or store.names() == []


def test_validate_refuses_missing_weights_and_bad_config(store: AdapterStore,
                                                         tmp_path: Path) -> None:
    with pytest.raises(AdapterInvalidError, match="no weights"):
        store.validate(write_adapter(tmp_path / "a", weights=None), max_rank=16)
    store.validate(write_adapter(tmp_path / "b", weights="adapter_model.bin"), max_rank=16)
    bad = tmp_path / "c"
    bad.mkdir()
    (bad / "adapter_config.json").write_text("{not json")
    with pytest.raises(AdapterInvalidError, match="unreadable"):
        store.validate(bad, max_rank=16)
    with pytest.raises(AdapterInvalidError, match="unreadable"):
        store.validate(tmp_path / "nowhere", max_rank=16)


def test_validate_base_model_mismatch(store: AdapterStore, tmp_path: Path) -> None:
    publish(store, write_adapter(tmp_path / "a"), "gen-0@v1")
    with pytest.raises(AdapterInvalidError, match="base_model_name_or_path") as err:
        store.validate("gen-0@v1", max_rank=16, base_model_path="/models/other")
    assert isinstance(err.value, MaftError)
    store.validate(str(store.path("gen-0@v1")), max_rank=16, base_model_path=BASE + "/")


def test_unsafe_names_are_refused(store: AdapterStore) -> None:
    for bad in ("../x", ".tmp-x", "a/b", ""):
        with pytest.raises(ValueError):
            store.path(bad)
