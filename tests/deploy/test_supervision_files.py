"""Compose and Kubernetes do what `maft up` does (issue 15): every long-running service is
restarted when it dies (compose restart policies, Kubernetes probes), exactly one beat runs,
and inference is reachable only inside the deployment, behind the inference key, with runtime
LoRA loading off. Each check is shown to flag a broken file."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.deploy.test_deploy_files import (
    COMPOSE_CPU,
    COMPOSE_GPU,
    OVERLAYS,
    TEST_ENV,
    load_compose,
    objects,
    pod_templates,
    rendered,
)

__all__ = ["rendered"]  # the module fixture, shared with test_deploy_files

LONG_RUNNING = ("postgres", "redis", "inference", "gateway", "trainer", "beat")
RESTARTS = ("always", "unless-stopped", "on-failure")
# Served HTTP: ready only when they answer; alive as long as they answer.
SERVING = {"maft-gateway": "/readyz", "maft-inference": "/health"}


def command_of(container: dict[str, Any]) -> list[str]:
    return [*container.get("command", []), *container.get("args", [])]


def env_value(container_or_service: dict[str, Any], name: str) -> Any:
    """A variable of a k8s container (its `env` entry) or of a compose service (its value)."""
    env = container_or_service.get("env") or container_or_service.get("environment") or {}
    if isinstance(env, dict):
        return env.get(name)
    return next((e for e in env if e.get("name") == name), None)


def compose_supervision_problems(model: dict[str, Any]) -> list[str]:
    """Where compose would leave a dead service dead, run two beats, or open inference."""
    services = model["services"]
    problems = [f"{name}: restart is {services[name].get('restart', 'no')!r}"
                for name in LONG_RUNNING
                if not str(services[name].get("restart", "no")).startswith(RESTARTS)]
    beat_replicas = (services["beat"].get("deploy") or {}).get("replicas", 1)
    if beat_replicas != 1:
        problems.append(f"beat: {beat_replicas} replicas (two beats fire every schedule twice)")
    problems += [f"{name}: runs an embedded beat besides the beat service"
                 for name, s in services.items() if name != "beat"
                 and "--beat" in (s.get("command") or [])]
    inference = services["inference"]
    if inference.get("ports"):
        problems.append("inference: publishes a port")
    if not env_value(inference, "MAFT_INFERENCE_API_KEY"):
        problems.append("inference: no inference key")
    if str(env_value(inference, "MAFT_RUNTIME_LORA_ENDPOINTS")).lower() == "true":
        problems.append("inference: runtime LoRA loading is on")
    return problems


def k8s_supervision_problems(docs: list[dict[str, Any]]) -> list[str]:
    """Where Kubernetes would not restart a hung MAFT pod, run two beats, or open inference."""
    problems = []
    for name, template in pod_templates(docs):
        for c in template["spec"]["containers"]:
            problems += _container_problems(name, c, template["spec"])
    beat = objects(docs, "Deployment")["maft-beat"]["spec"]
    if beat.get("replicas") != 1 or beat["strategy"]["type"] != "Recreate":
        problems.append("maft-beat: not one replica replaced by Recreate (two beats)")
    return problems


def _container_problems(workload: str, c: dict[str, Any], pod: dict[str, Any]) -> list[str]:
    problems = []
    if pod.get("restartPolicy", "Always") == "Always" and workload != "maft-beat" \
            and "livenessProbe" not in c:
        problems.append(f"{workload}: no livenessProbe")
    if workload in SERVING and c.get("readinessProbe", {}).get("httpGet", {}).get(
            "path") != SERVING[workload]:
        problems.append(f"{workload}: readinessProbe is not GET {SERVING[workload]}")
    if workload != "maft-beat" and "--beat" in command_of(c):
        problems.append(f"{workload}: runs an embedded beat besides maft-beat")
    if workload == "maft-inference":
        key = env_value(c, "MAFT_INFERENCE_API_KEY") or {}
        if "secretKeyRef" not in key.get("valueFrom", {}):
            problems.append("maft-inference: the inference key is not from a Secret")
        if str((env_value(c, "MAFT_RUNTIME_LORA_ENDPOINTS") or {}).get("value")) == "true":
            problems.append("maft-inference: runtime LoRA loading is on")
    return problems


@pytest.mark.parametrize("files", [COMPOSE_GPU, COMPOSE_CPU], ids=["gpu", "cpu-override"])
def test_compose_restarts_and_locks_down(files: tuple[Any, ...]) -> None:
    assert compose_supervision_problems(load_compose(files, TEST_ENV)) == []


def test_compose_supervision_check_flags_broken_files() -> None:
    model = copy.deepcopy(load_compose(COMPOSE_CPU, TEST_ENV))
    services = model["services"]
    services["inference"].pop("restart")
    services["gateway"]["restart"] = "no"
    services["beat"]["deploy"] = {"replicas": 2}
    services["trainer"]["command"] = ["celery", "-A", "x", "worker", "--beat"]
    services["inference"]["ports"] = ["8001:8001"]
    services["inference"]["environment"]["MAFT_RUNTIME_LORA_ENDPOINTS"] = "true"
    del services["inference"]["environment"]["MAFT_INFERENCE_API_KEY"]
    problems = "\n".join(compose_supervision_problems(model))
    for expected in ("inference: restart is 'no'", "gateway: restart is 'no'", "2 replicas",
                     "trainer: runs an embedded beat", "publishes a port", "no inference key",
                     "runtime LoRA loading is on"):
        assert expected in problems, expected


@pytest.mark.parametrize("name", OVERLAYS)
def test_k8s_restarts_and_locks_down(rendered: dict[str, list[dict[str, Any]]],
                                     name: str) -> None:
    assert k8s_supervision_problems(rendered[name]) == []


def test_k8s_supervision_check_flags_broken_files(
        rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = copy.deepcopy(rendered["gpu-prod"])
    deployments = objects(docs, "Deployment")
    trainer = deployments["maft-trainer"]["spec"]["template"]["spec"]["containers"][0]
    del trainer["livenessProbe"]
    trainer["command"] = [*trainer["command"], "--beat"]
    inference = deployments["maft-inference"]["spec"]["template"]["spec"]["containers"][0]
    inference["readinessProbe"]["httpGet"]["path"] = "/v1/models"
    inference["env"] = [e for e in inference["env"] if e["name"] != "MAFT_INFERENCE_API_KEY"]
    inference["env"].append({"name": "MAFT_RUNTIME_LORA_ENDPOINTS", "value": "true"})
    deployments["maft-beat"]["spec"]["strategy"] = {"type": "RollingUpdate"}
    problems = "\n".join(k8s_supervision_problems(docs))
    for expected in ("maft-trainer: no livenessProbe", "maft-trainer: runs an embedded beat",
                     "readinessProbe is not GET /health", "inference key is not from a Secret",
                     "runtime LoRA loading is on", "maft-beat: not one replica"):
        assert expected in problems, expected
