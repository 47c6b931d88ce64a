"""The adapter store: one folder per immutable `lora_name` (e.g. `gen-0@v3`), served by vLLM.

The inference server's resolver (services.inference.store_resolver, through `servable`) loads
`<store>/<lora_name>` on the first request naming it, when its adapter_config.json has
`peft_type == "LORA"` and `base_model_name_or_path` equal to the server's `--model` string.
Publishing therefore rewrites that field to the server's normalised model path, and appears
atomically (a dot-named temp folder renamed into place), so the resolver never sees a
half-written adapter. Names are never reused: a replica that already loaded `gen-0@v3` keeps
serving it from memory, so a changed `gen-0@v3` would be served inconsistently.
Standard library only.
"""

from __future__ import annotations

import errno
import filecmp
import json
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any, NamedTuple

from maft.enums import Role
from maft.exceptions import AdapterExistsError, AdapterInvalidError

CONFIG_FILE = "adapter_config.json"
WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")
ROLE_PREFIXES: dict[str, str] = {Role.GENERATOR: "gen", Role.CRITIC: "crit"}
_ROLES_BY_PREFIX = {v: k for k, v in ROLE_PREFIXES.items()}
_NAME_RE = re.compile(r"^(gen|crit)-(\d+)@v(\d+)$")
# What vLLM accepts in a store folder name: no path separators, no hidden/temp names.
_SAFE_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@+-]*$")


class LoraName(NamedTuple):
    """The parts of a society lora_name."""

    role: str
    agent_index: int
    version: int


def lora_name_for(role: str, agent_index: int, version: int) -> str:
    """The lora_name of agent `agent_index` of `role` ("generator"/"critic") at `version`."""
    if role not in ROLE_PREFIXES:
        raise ValueError(f"unknown role {role!r}; known: {', '.join(ROLE_PREFIXES)}")
    if agent_index < 0 or version < 0:
        raise ValueError("agent_index and version must be >= 0")
    return f"{ROLE_PREFIXES[role]}-{agent_index}@v{version}"


def parse_lora_name(name: str) -> LoraName:
    """Inverse of `lora_name_for`; ValueError for a name that is not a society lora_name."""
    match = _NAME_RE.fullmatch(name)  # fullmatch: `$` alone would accept a trailing newline
    if not match:
        raise ValueError(f"not a lora_name of the form gen-<i>@v<n> or crit-<i>@v<n>: {name!r}")
    return LoraName(_ROLES_BY_PREFIX[match[1]], int(match[2]), int(match[3]))


def is_store_name(name: str, extra_names: re.Pattern[str] | None = None) -> bool:
    """Whether `name` is a society lora_name (or fully matches `extra_names`) and safe as a
    folder name: no path separator, not hidden."""
    own = _NAME_RE.fullmatch(name) or (extra_names is not None and extra_names.fullmatch(name))
    return bool(own and _SAFE_NAME_RE.fullmatch(name))


def normalized_model_path(path: str | Path) -> str:
    """The one spelling of a base-model path: absolute, user-expanded, no trailing slash.

    The launcher passes it as `vllm serve <path>` and the trainer writes it into adapters; the
    resolver compares the two strings exactly. Symlinks are kept as given (no realpath), so the
    string does not depend on how a volume happens to be mounted underneath.
    """
    return os.path.normpath(os.path.abspath(os.path.expanduser(os.fspath(path))))


def read_adapter_config(folder: Path) -> dict[str, Any]:
    """The parsed adapter_config.json of `folder`; AdapterInvalidError when unreadable."""
    try:
        config = json.loads((folder / CONFIG_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise AdapterInvalidError(str(folder), f"{CONFIG_FILE} unreadable ({exc})") from exc
    if not isinstance(config, dict):
        raise AdapterInvalidError(str(folder), f"{CONFIG_FILE} is not a JSON object")
    return config


def _config_problem(config: dict[str, Any], max_rank: int) -> str | None:
    """Why vLLM would refuse this LoRA config (mirrors vllm.lora.peft_helper), or None."""
    ranks = [config.get("r"), *(config.get("rank_pattern") or {}).values()]
    if config.get("peft_type") != "LORA":
        return f"peft_type is {config.get('peft_type')!r}, not 'LORA'"
    if not all(isinstance(r, int) and r > 0 for r in ranks):
        return f"rank r={config.get('r')!r} is not a positive integer"
    if max(ranks) > max_rank:
        return f"rank {max(ranks)} exceeds the server's max_lora_rank {max_rank}"
    if config.get("modules_to_save"):
        return f"modules_to_save={config['modules_to_save']!r} (vLLM serves only LoRA weights)"
    if config.get("use_dora") or config.get("lora_bias") or config.get("bias", "none") != "none":
        return "DoRA / LoRA bias / bias are not supported by vLLM"
    return None


def _weights_problem(folder: Path) -> str | None:
    if any((folder / w).is_file() for w in WEIGHT_FILES):
        return None
    return f"no weights file ({' or '.join(WEIGHT_FILES)})"


def _base_problem(config: dict[str, Any], base_model_path: str | None) -> str | None:
    """The resolver compares base_model_name_or_path to the server's --model string exactly."""
    if base_model_path is None:
        return None
    want, got = normalized_model_path(base_model_path), config.get("base_model_name_or_path")
    return None if got == want else (
        f"base_model_name_or_path is {got!r}, the server's model is {want!r}")


def _check_inside(folder: Path, real_root: Path) -> None:
    """AdapterInvalidError unless `folder` and every entry in it resolve into the store.

    A symlink in the store (the folder, or a file in it) could otherwise make the server read
    an adapter, or any file, from elsewhere under a society name.
    """
    real = folder.resolve()
    if real.parent != real_root or not real.is_dir():
        raise AdapterInvalidError(str(folder), f"resolves to {real}, not a folder directly "
                                  f"inside the store {real_root}")
    outside = [p.name for p in real.iterdir() if p.resolve().parent != real]
    if outside:
        raise AdapterInvalidError(str(folder), f"entries {outside} resolve outside it")


def _fsync_path(path: Path) -> None:
    """fsync a file or a folder (folders: so a rename inside it survives a crash)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _same_tree(a: Path, b: Path) -> bool:
    """Whether two flat adapter folders hold the same files with the same bytes."""
    names_a = sorted(p.name for p in a.iterdir() if p.is_file())
    names_b = sorted(p.name for p in b.iterdir() if p.is_file())
    if names_a != names_b:
        return False
    _, mismatch, errors = filecmp.cmpfiles(a, b, names_a, shallow=False)
    return not mismatch and not errors


class AdapterStore:
    """A folder of published adapters, `root/<lora_name>/`, shared with every vLLM replica."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, lora_name: str) -> Path:
        """The folder of `lora_name` (whether or not it exists)."""
        if not _SAFE_NAME_RE.fullmatch(lora_name):
            raise ValueError(f"unsafe lora_name {lora_name!r}")
        return self.root / lora_name

    def exists(self, lora_name: str) -> bool:
        """Whether `lora_name` is published."""
        return self.path(lora_name).is_dir()

    def names(self) -> list[str]:
        """Published lora_names, sorted; temp folders (starting with '.') are not listed."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir()
                      if p.is_dir() and not p.name.startswith("."))

    def next_version(self) -> int:
        """A society version above every society lora_name in the store."""
        versions = [parse_lora_name(n).version for n in self.names() if _NAME_RE.fullmatch(n)]
        return max(versions, default=0) + 1

    def _folder(self, lora_name_or_path: str | Path) -> Path:
        if isinstance(lora_name_or_path, Path) or os.sep in lora_name_or_path:
            return Path(lora_name_or_path)
        return self.path(lora_name_or_path)

    def validate(self, lora_name_or_path: str | Path, *, max_rank: int,
                 base_model_path: str | None = None) -> dict[str, Any]:
        """Check that vLLM can serve the adapter; return its config or raise AdapterInvalidError.

        A `str` without a path separator is a lora_name in this store; anything else a folder.
        With `base_model_path`, the config must name exactly its normalised form (as the
        resolver requires).
        """
        folder = self._folder(lora_name_or_path)
        config = read_adapter_config(folder)
        problem = (_config_problem(config, max_rank) or _weights_problem(folder)
                   or _base_problem(config, base_model_path))
        if problem:
            raise AdapterInvalidError(str(folder), problem)
        return config

    def servable(self, lora_name: str, *, max_rank: int, base_model_path: str,
                 extra_names: re.Pattern[str] | None = None) -> Path:
        """The folder the inference server may load `lora_name` from, or AdapterInvalidError.

        Only the store's own names (`gen-<i>@v<n>`, `crit-<i>@v<n>`, or a full match of
        `extra_names`) resolve, only to a folder directly inside the store once symlinks are
        followed (its files too), and only when `validate` passes. The path returned is the
        store's own spelling (`root/lora_name`), which clients compare with what vLLM lists.
        """
        if not is_store_name(lora_name, extra_names):
            raise AdapterInvalidError(repr(lora_name), "not a name of this adapter store")
        folder = Path(normalized_model_path(self.path(lora_name)))
        _check_inside(folder, Path(self.root).resolve())
        self.validate(folder, max_rank=max_rank, base_model_path=base_model_path)
        return folder

    def _stage(self, src: Path, lora_name: str, base_model_path: str) -> Path:
        """Copy the adapter's top-level files into a hidden temp folder, with the base rewritten."""
        tmp = self.root / f".tmp-{lora_name}-{uuid.uuid4().hex}"
        tmp.mkdir(parents=True)
        for item in src.iterdir():
            # Only top-level files: trainer outputs may hold checkpoint-* folders we never serve.
            if item.is_file() and item.name != CONFIG_FILE:
                shutil.copy2(item, tmp / item.name)
        config = read_adapter_config(src)
        config["base_model_name_or_path"] = normalized_model_path(base_model_path)
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        for item in tmp.iterdir():
            _fsync_path(item)
        _fsync_path(tmp)
        return tmp

    def publish(self, src_dir: Path, lora_name: str, *, base_model_path: str,
                max_rank: int) -> Path:
        """Validate `src_dir` and publish it atomically as `lora_name`; return its folder.

        Raises AdapterInvalidError for an unservable adapter, AdapterExistsError when the name
        is taken (names are never reused, even for identical content: see publish_if_absent).
        """
        dest = self.path(lora_name)
        self.validate(Path(src_dir), max_rank=max_rank)
        if dest.exists():
            raise AdapterExistsError(lora_name)
        tmp = self._stage(Path(src_dir), lora_name, base_model_path)
        try:
            # rename() onto an existing non-empty folder fails: a concurrent publisher loses.
            os.rename(tmp, dest)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                raise AdapterExistsError(lora_name) from exc
            raise
        _fsync_path(self.root)
        return dest

    def is_published_copy(self, src_dir: Path, lora_name: str, *, base_model_path: str) -> bool:
        """Whether `lora_name` holds exactly what publishing `src_dir` would write."""
        tmp = self._stage(Path(src_dir), lora_name, base_model_path)
        try:
            return self.exists(lora_name) and _same_tree(tmp, self.path(lora_name))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def publish_if_absent(self, src_dir: Path, lora_name: str, *, base_model_path: str,
                          max_rank: int) -> Path:
        """Like publish, but quiet when the same adapter is already there (retried tasks).

        Still raises AdapterExistsError when the name holds a different adapter.
        """
        try:
            return self.publish(src_dir, lora_name, base_model_path=base_model_path,
                                max_rank=max_rank)
        except AdapterExistsError:
            if self.is_published_copy(src_dir, lora_name, base_model_path=base_model_path):
                return self.path(lora_name)
            raise AdapterExistsError(lora_name, "it holds a different adapter") from None
