"""`maft up`'s wiring (nothing started): the inference key, where each child listens."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from maft.cli import up
from maft.cli.settings import CliSettings


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliSettings:
    for name in [n for n in os.environ if n.startswith("MAFT_")]:
        monkeypatch.delenv(name)
    monkeypatch.setitem(CliSettings.model_config, "env_file", None)
    return CliSettings(home=tmp_path / "home")


def test_the_inference_key_is_made_once_and_kept_private(settings: CliSettings) -> None:
    key = up.ensure_inference_key(settings)
    path = settings.home / "inference-key"
    assert len(key) >= 32 and path.read_text().strip() == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert up.ensure_inference_key(settings) == key  # kept across runs
    given = CliSettings(home=settings.home, inference_api_key="from-env")  # type: ignore[arg-type]
    assert up.ensure_inference_key(given) == "from-env"


def test_every_child_gets_the_key_and_vllm_listens_on_its_own_host(settings: CliSettings) -> None:
    listen = up.Listen("0.0.0.0", 8000, "127.0.0.1", 8001)
    inference, gateway, trainer = up.children(settings, Path("/m"), listen, False, "k3y")
    for child in (inference, gateway, trainer):
        assert child.env["MAFT_INFERENCE_API_KEY"] == "k3y"
        assert child.env["MAFT_INFERENCE_URL"] == "http://127.0.0.1:8001"
    assert inference.env["MAFT_HOST"] == "127.0.0.1"  # not the gateway's 0.0.0.0
    assert gateway.argv[gateway.argv.index("--host") + 1] == "0.0.0.0"
    assert "k3y" not in " ".join(inference.argv + gateway.argv + trainer.argv)  # `ps` shows argv
    assert listen.gateway_url == "http://127.0.0.1:8000"


def test_local_urls() -> None:
    assert up.local_url("0.0.0.0", 9) == up.local_url("::", 9) == "http://127.0.0.1:9"
    assert up.local_url("10.0.0.5", 9) == "http://10.0.0.5:9"
    assert up.local_url("::1", 9) == "http://[::1]:9"
