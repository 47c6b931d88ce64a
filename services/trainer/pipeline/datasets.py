"""Where a run keeps each agent's curated examples between the curate and train steps."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from maft.curation import Example


def dataset_path(runs_dir: Path, run_id: uuid.UUID, role: str, agent_index: int) -> Path:
    """Where a run keeps one agent's curated examples."""
    return runs_dir / str(run_id) / f"{role}-{agent_index}.jsonl"


def write_dataset(path: Path, examples: Sequence[Example]) -> None:
    """JSONL, written atomically so a retried step never reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as out:
        for ex in examples:
            out.write(json.dumps({"messages": list(ex.messages), "train_on": ex.train_on,
                                  "kind": ex.kind, "debate_id": ex.debate_id,
                                  "label": ex.label, "label_source": ex.label_source}) + "\n")
    tmp.replace(path)


def read_dataset(path: Path) -> list[dict[str, Any]]:
    """The examples written by write_dataset."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
