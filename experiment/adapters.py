"""Train a method's adapters for one iteration and publish them under experiment-only names.

Names: `xp-<run>-<method>-<slot>-it<t>` (slot: all, gen<i>, crit<i>), which never collide with
the product's `gen-<i>@v<n>` / `crit-<i>@v<n>`. Each adapter is trained into
`<out>/adapters/.tmp-<name>`, renamed to `<out>/adapters/<name>` when complete, then published
to the store; a resumed run finds finished adapters there and does not train them again.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from experiment.config import ExperimentConfig, Runtime
from experiment.methods import MethodSpec
from experiment.state import Society
from maft.adapter_store import AdapterStore

Progress = Callable[[int, int, float | None], None]
_NAME = re.compile(r"^xp-.+-it(\d+)$")  # what Trainer.name makes
# What the inference server must be told to resolve besides society names
# (MAFT_LORA_NAME_PATTERN; our own server gets it, a server given by --inference-url needs it).
NAME_PATTERN = r"xp-[A-Za-z0-9]+-[a-z0-9-]+-(all|gen[0-9]+|crit[0-9]+)-it[0-9]+"


@dataclass
class Trainer:
    """What training needs: the config, where the base model and the store are, the run id."""

    config: ExperimentConfig
    runtime: Runtime
    run_id: str
    base_name: str
    served_model_path: str

    @property
    def local_dir(self) -> Path:
        """Finished adapters of this run (the store holds published copies)."""
        return self.runtime.out_dir / "adapters"

    def name(self, method: str, slot: str, iteration: int) -> str:
        """The adapter's name in the store."""
        return f"xp-{self.run_id}-{method.replace('_', '-')}-{slot}-it{iteration}"

    def seed(self, name: str) -> int:
        """A per-adapter training seed derived from the experiment seed."""
        digest = hashlib.sha256(f"{self.config.seed}:{name}".encode()).digest()
        return int.from_bytes(digest[:4], "big")

    def parent(self, spec: MethodSpec, previous: str) -> Path | None:
        """The adapter to continue from (None: the base model)."""
        if spec.from_base or previous == self.base_name:
            return None
        return self.local_dir / previous

    def train_one(self, name: str, examples: list[dict[str, Any]], parent: Path | None,
                  progress: Progress | None) -> dict[str, Any]:
        """Train (unless already finished) and publish one adapter; its metrics."""
        final = self.local_dir / name
        metrics: dict[str, Any] = {"examples": len(examples), "resumed": final.is_dir()}
        if not final.is_dir():
            metrics.update(self._train(name, examples, parent, progress))
        AdapterStore(self.runtime.store_dir).publish_if_absent(
            final, name, base_model_path=self.served_model_path,
            max_rank=self.runtime.max_lora_rank)
        return metrics

    def _train(self, name: str, examples: list[dict[str, Any]], parent: Path | None,
               progress: Progress | None) -> dict[str, Any]:
        from services.trainer.lora.loop import ChatExample, train_lora

        config = self.config.training.train_config(self.seed(name))
        tmp = self.local_dir / f".tmp-{name}"
        shutil.rmtree(tmp, ignore_errors=True)
        start = time.monotonic()
        result = train_lora(base_model_path=self.runtime.model_path,
                            examples=[ChatExample(e["messages"], e["train_on"])
                                      for e in examples],
                            out_dir=tmp, config=config, parent_adapter=parent,
                            progress=progress)
        tmp.rename(self.local_dir / name)
        return {"seconds": round(time.monotonic() - start, 1), **asdict(result),
                "tokens_per_s": result.tokens_per_s}


def society_version(names: Iterable[str]) -> int:
    """The iteration that trained the newest of these adapters (0: all are the base model).

    A method's train debates of iteration t are held by its agents after t - 1 trainings, so
    this is t - 1, unless iteration t - 1 gave none of them data (then they are older agents)."""
    found = [int(m.group(1)) for name in names if (m := _NAME.match(name))]
    return max(found, default=0)


def slots_of(spec: MethodSpec, agents: int) -> list[str]:
    """The adapter slots a method trains."""
    if spec.shared:
        return ["all"]
    critics = [f"crit{i}" for i in range(agents)] if spec.train_critics else []
    return [f"gen{i}" for i in range(agents)] + critics


def previous_name(society: Society, slot: str) -> str:
    """The adapter a slot holds now."""
    if slot == "all":
        return society.generators[0]
    if slot.startswith("gen"):
        return society.generators[int(slot.removeprefix("gen"))]
    return society.critics[int(slot.removeprefix("crit"))]


def society_of(names: dict[str, str], previous: Society, agents: int) -> Society:
    """The new society: trained slots replaced, the others as they were."""
    if "all" in names:
        return Society((names["all"],) * agents, (names["all"],) * agents)
    gens = tuple(names.get(f"gen{i}", previous.generators[i]) for i in range(agents))
    crits = tuple(names.get(f"crit{i}", previous.critics[i]) for i in range(agents))
    return Society(gens, crits)


def train_method(trainer: Trainer, spec: MethodSpec, iteration: int,
                 slots: dict[str, list[dict[str, Any]]], previous: Society,
                 progress: Callable[[str], Progress | None]) -> tuple[Society, dict[str, Any]]:
    """Train every slot that has data (others keep their adapter, or the base model for a
    method that restarts from it); the new society and a per-slot report."""
    agents = len(previous.generators)
    names: dict[str, str] = {}
    report: dict[str, Any] = {}
    for slot in slots_of(spec, agents):
        examples, before = slots.get(slot, []), previous_name(previous, slot)
        if not examples:
            names[slot] = trainer.base_name if spec.from_base else before
            report[slot] = {"adapter": names[slot], "trained": False, "examples": 0}
            continue
        names[slot] = trainer.name(spec.key, slot, iteration)
        metrics = trainer.train_one(names[slot], examples, trainer.parent(spec, before),
                                    progress(f"{spec.key} {slot}"))
        report[slot] = {"adapter": names[slot], "trained": True, "parent": before, **metrics}
    return society_of(names, previous, agents), report
