"""curate(): every agent's dataset from stored debates, with statistics and outcomes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from maft.curation.examples import critic_dataset, generator_dataset
from maft.curation.labels import select
from maft.curation.types import DROP_REASONS, AgentDataset, Curation, CurationConfig
from maft.enums import LabelSource, Role
from maft.records import DebateRecord
from maft.tasks.base import Task


def curate(debates: Sequence[DebateRecord], *, task: Task, agents: int,
           config: CurationConfig) -> Curation:
    """Build the 2 * `agents` datasets (generator n, critic n) from stored debates."""
    if agents < 1:
        raise ValueError("agents must be at least 1")
    dropped: dict[str, str] = {}
    usable = select(debates, task, config, dropped)
    datasets: dict[tuple[str, int], AgentDataset] = {}
    for n in range(agents):
        datasets[Role.GENERATOR, n] = generator_dataset(usable, n, task, config)
        datasets[Role.CRITIC, n] = critic_dataset(usable, n, task, config)
    sources, reasons = Counter(item.source for item in usable), Counter(dropped.values())
    stats: dict[str, Any] = {
        "task": task.name, "debates_seen": len(debates), "debates_used": len(usable),
        "dropped": {r: reasons[r] for r in DROP_REASONS},
        "label_sources": {str(s): sources[s] for s in LabelSource},
        "society_versions": sorted({item.debate.society_version for item in usable}),
    }
    stats.update({f"{role}-{n}": ds.stats() for (role, n), ds in datasets.items()})
    labels = {item.debate.id: (item.label, item.source) for item in usable}
    return Curation(datasets, stats, dropped, labels)
